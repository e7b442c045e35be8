"""The rules every loader shares: image extensions, reports, name parsing, error wording."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from unreid.data.datasets.layout import (
    REPORT_KEYS,
    NameFormat,
    absolute_root,
    camera_range,
    empty_split_report,
    first_items,
    found_in,
    is_image_file,
    locate,
    require_dir,
    scan_image_folder,
)
from unreid.data.datasets.market_style import MARKET_FORMAT, PERSONX_FORMAT
from unreid.data.samples import DatasetLayoutError


def test_scan_helper_returns_report(tmp_path: Path, touch) -> None:
    touch(tmp_path, "0001_c1s1_000001_00.bmp", "-1_c1s1_000002_00.jpeg", "sub/x.jpg")
    samples, report = scan_image_folder(tmp_path, MARKET_FORMAT)
    assert [s.pid for s in samples] == [1]
    assert report == {"images": 1, "junk": 1, "distractors": 0, "ignored_files": 1, "missing": 0}


def test_scan_missing_folder_names_it(tmp_path: Path) -> None:
    with pytest.raises(DatasetLayoutError, match="market1501: expected folder .* does not exist"):
        scan_image_folder(tmp_path / "nope", MARKET_FORMAT)


@pytest.mark.parametrize(
    ("name", "expected"),
    [("a.jpg", True), ("a.JPEG", True), ("a.png", True), ("a.bmp", True), ("a.txt", False)],
)
def test_is_image_file_ignores_case(name: str, expected: bool) -> None:
    assert is_image_file(name) is expected


def test_empty_report_has_every_key_at_zero() -> None:
    assert empty_split_report() == dict.fromkeys(REPORT_KEYS, 0)
    assert empty_split_report() is not empty_split_report()


def test_name_format_parse_reads_pid_camera_frame() -> None:
    assert MARKET_FORMAT.parse(Path("0002_c1s1_000451_03.jpg")) == (2, 1, 451)
    assert MARKET_FORMAT.parse(Path("-1_c3s1_000001_00.jpg")) == (-1, 3, 1)
    assert MARKET_FORMAT.parse(Path("person2.jpg")) is None
    assert PERSONX_FORMAT.parse(Path("0001_c10s1_0001.jpg")) == (1, 10, None)


def test_name_format_without_frame_group() -> None:
    import re

    fmt = NameFormat("x", re.compile(r"(?P<pid>\d+)-(?P<cam>\d+)"), "1-2.jpg", {2: 0}, "p-c")
    assert fmt.parse(Path("7-2.png")) == (7, 2, None)


def test_camera_range_is_zero_based() -> None:
    assert camera_range(1, 3) == {1: 0, 2: 1, 3: 2}


def test_non_contiguous_cameras_are_listed(tmp_path: Path, touch) -> None:
    touch(tmp_path, "0001_c5s1_0001.jpg")
    with pytest.raises(DatasetLayoutError, match="one of 3, 4, 8, 10, 11, 12"):
        scan_image_folder(tmp_path, PERSONX_FORMAT)


def test_found_in_marks_folders_and_truncates(tmp_path: Path, touch) -> None:
    touch(tmp_path, *(f"f{i:02d}.jpg" for i in range(22)))
    (tmp_path / "sub").mkdir()
    listing = found_in(tmp_path)
    assert listing.startswith("[f00.jpg, f01.jpg")
    assert listing.endswith(", ... (+3 more)]")
    assert "sub/" not in listing  # sorted after the files, beyond the first 20
    assert found_in(tmp_path / "sub") == "[]"
    assert found_in(tmp_path / "nope").startswith("<cannot list:")


def test_first_items_counts_the_rest() -> None:
    assert first_items(["a", "b"]) == "a, b"
    assert first_items([str(i) for i in range(7)]) == "0, 1, 2, 3, 4, ... (7 in total)"


def test_absolute_root_keeps_symlinks(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "link")
    assert absolute_root(tmp_path / "link") == tmp_path / "link"


def test_require_dir_rejects_missing_and_files(tmp_path: Path, touch) -> None:
    with pytest.raises(DatasetLayoutError, match="x: root .* does not exist"):
        require_dir(tmp_path / "nope", "x")
    touch(tmp_path, "file.txt")
    with pytest.raises(DatasetLayoutError, match="x: root .* is not a folder"):
        require_dir(tmp_path / "file.txt", "x")


def test_locate_prefers_markers_then_candidate_folders(tmp_path: Path) -> None:
    (tmp_path / "B" / "split").mkdir(parents=True)
    (tmp_path / "A").mkdir()
    assert locate(tmp_path, "x", ("A", "B"), ("split",)) == tmp_path / "B"
    assert locate(tmp_path, "x", ("A", "C"), ("split",)) == tmp_path / "A"
    assert locate(tmp_path, "x", ("C",), ("split",)) == tmp_path
    assert locate(tmp_path, "x", (), ("split",)) == tmp_path
    (tmp_path / "split").mkdir()
    assert locate(tmp_path, "x", ("B",), ("split",)) == tmp_path
