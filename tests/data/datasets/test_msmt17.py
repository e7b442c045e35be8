"""MSMT17 in its three layouts: the official list files (V1, V2) and the Market-style release."""

from __future__ import annotations

from pathlib import Path

import pytest

from unreid.data.datasets import load_dataset, load_dataset_with_report
from unreid.data.samples import DatasetLayoutError


def test_msmt17_v1_lists(tmp_path: Path, msmt_lists) -> None:
    base = msmt_lists(tmp_path / "msmt17" / "MSMT17_V1")
    dataset, report = load_dataset_with_report("msmt17", tmp_path)
    assert dataset.root == str(base)
    assert [(s.pid, s.camera, s.frame) for s in dataset.train] == [(0, 0, 15), (1, 14, 456)]
    assert dataset.train[1].path == str(base / "train/0001/0001_000_15_0113noon_0456_1.jpg")
    assert [(s.pid, s.camera) for s in dataset.query] == [(0, 2)]
    assert dataset.query[0].path.startswith(str(base / "test"))
    assert [(s.pid, s.camera) for s in dataset.gallery] == [(0, 3), (2, 6)]
    assert report["gallery"]["distractors"] == 0  # MSMT pid 0 is a real identity
    assert report["train"]["images"] == 2


def test_msmt17_v2_folder_names(tmp_path: Path, msmt_lists) -> None:
    base = msmt_lists(tmp_path / "MSMT17_V2", "mask_train_v2", "mask_test_v2")
    dataset, _ = load_dataset_with_report("msmt17", tmp_path)
    assert dataset.root == str(base)
    assert "mask_train_v2" in dataset.train[0].path
    assert "mask_test_v2" in dataset.gallery[0].path


def test_msmt17_market_style_release(tmp_path: Path, touch) -> None:
    base = tmp_path / "MSMT17_V1"
    touch(base / "bounding_box_train", "0000_c1_0000.jpg", "0001_c15_0001.jpg")
    touch(base / "query", "0002_c3_0002.jpg")
    touch(base / "bounding_box_test", "0002_c4_0003.jpg", "-1_c4_0004.jpg")
    dataset, report = load_dataset_with_report("msmt17", tmp_path)
    assert [(s.pid, s.camera, s.frame) for s in dataset.train] == [(0, 0, None), (1, 14, None)]
    assert report["gallery"]["junk"] == 1
    touch(base / "query", "0002_c16_0002.jpg")
    with pytest.raises(DatasetLayoutError, match=r"outside 1\.\.15"):
        load_dataset("msmt17", tmp_path)


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("0000/0000_000_01_0303morning_0015_0.jpg", "1 fields"),
        ("0000/0000_000_01_0303morning_0015_0.jpg zero", "not a non-negative integer"),
        ("0000/0000_000_xx_0303morning_0015_0.jpg 0", "third '_' field"),
        ("0000/0000_000_16_0303morning_0015_0.jpg 0", r"outside 1\.\.15"),
        ("0000/0000_000_01_0303morning_0015_0.txt 0", "not an image path"),
    ],
)
def test_msmt17_malformed_line_names_file_and_line(
    tmp_path: Path,
    line: str,
    why: str,
    msmt_lists,
) -> None:
    base = msmt_lists(tmp_path / "MSMT17_V1")
    with open(base / "list_gallery.txt", "a") as handle:
        handle.write(line + "\n")
    with pytest.raises(DatasetLayoutError, match=why) as info:
        load_dataset("msmt17", tmp_path)
    assert f"{base / 'list_gallery.txt'}:3:" in str(info.value)


def test_msmt17_missing_listed_files_raise_with_paths(tmp_path: Path, msmt_lists) -> None:
    base = msmt_lists(tmp_path / "MSMT17_V1")
    (base / "test/0002/0002_000_07_0113noon_0300_0.jpg").unlink()
    (base / "train/0000/0000_000_01_0303morning_0015_0.jpg").unlink()
    with pytest.raises(DatasetLayoutError, match="2 image") as info:
        load_dataset("msmt17", tmp_path)
    assert "0002_000_07_0113noon_0300_0.jpg" in str(info.value)
    assert "0000_000_01_0303morning_0015_0.jpg" in str(info.value)


def test_msmt17_missing_list_file(tmp_path: Path, msmt_lists) -> None:
    base = msmt_lists(tmp_path / "MSMT17_V1")
    (base / "list_val.txt").unlink()
    with pytest.raises(DatasetLayoutError, match="expected list file") as info:
        load_dataset("msmt17", tmp_path)
    assert str(base / "list_val.txt") in str(info.value)


def test_msmt17_lists_without_image_folders(tmp_path: Path, msmt_lists) -> None:
    base = msmt_lists(tmp_path / "MSMT17_V1")
    (base / "test").rename(base / "images_test")
    with pytest.raises(DatasetLayoutError, match="mask_train_v2/") as info:
        load_dataset("msmt17", tmp_path)
    assert "images_test/" in str(info.value)


def test_msmt17_no_layout_lists_all_three(tmp_path: Path, touch) -> None:
    touch(tmp_path / "msmt", "a.jpg")
    with pytest.raises(DatasetLayoutError) as info:
        load_dataset("msmt17", tmp_path)
    message = str(info.value)
    assert "(a) MSMT17_V1/" in message and "(b) MSMT17_V2/" in message
    assert "(c) Market-style" in message
    assert "msmt/" in message and str(tmp_path) in message
