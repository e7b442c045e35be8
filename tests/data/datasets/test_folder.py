"""Unlabelled custom data: camera sub-folders or a CSV of path,camera."""

from __future__ import annotations

from pathlib import Path

import pytest

from unreid.data.datasets import load_dataset, load_dataset_with_report
from unreid.data.samples import DatasetLayoutError


def test_folder_camera_subfolders(tmp_path: Path, touch) -> None:
    touch(tmp_path / "cam10", "a.jpg")
    touch(tmp_path / "cam2", "b.PNG", "track1/c.jpeg", "notes.txt")
    touch(tmp_path / "empty")
    dataset, report = load_dataset_with_report("folder", tmp_path)
    assert [(Path(s.path).name, s.camera, s.pid) for s in dataset.train] == [
        ("a.jpg", 1, None),
        ("b.PNG", 0, None),
        ("c.jpeg", 0, None),
    ]
    assert not dataset.has_test_split
    assert report["train"]["images"] == 3
    assert report["train"]["ignored_files"] == 2  # notes.txt and the empty folder


def test_folder_images_in_root_explain_layout(tmp_path: Path, touch) -> None:
    touch(tmp_path, "a.jpg", "b.jpg")
    with pytest.raises(DatasetLayoutError, match=r"<root>/<camera>/<image>") as info:
        load_dataset("folder", tmp_path)
    assert str(tmp_path) in str(info.value) and "a.jpg" in str(info.value)


def test_folder_empty(tmp_path: Path, touch) -> None:
    touch(tmp_path / "cam1", "readme.md")
    with pytest.raises(DatasetLayoutError, match="no images found") as info:
        load_dataset("folder", tmp_path)
    assert str(tmp_path) in str(info.value)


def test_folder_csv_with_and_without_header(tmp_path: Path, touch) -> None:
    touch(tmp_path / "imgs", "1.jpg", "2.jpg", "3.jpg")
    other = tmp_path / "elsewhere"
    touch(other, "4.jpg")
    rows = f"imgs/1.jpg,north\nimgs/2.jpg,south\n\nimgs/3.jpg, north\n{other / '4.jpg'},east\n"
    (tmp_path / "plain.csv").write_text(rows)
    (tmp_path / "header.csv").write_text("path,camera\n" + rows)
    for name in ("plain.csv", "header.csv"):
        dataset, report = load_dataset_with_report("folder", tmp_path / name)
        cams = {Path(s.path).name: s.camera for s in dataset.train}
        assert cams == {"1.jpg": 1, "2.jpg": 2, "3.jpg": 1, "4.jpg": 0}
        assert dataset.train[0].path == str(other / "4.jpg")
        assert report["train"]["images"] == 4


def test_folder_csv_bad_row_names_line(tmp_path: Path, touch) -> None:
    touch(tmp_path, "1.jpg")
    csv_path = tmp_path / "list.csv"
    csv_path.write_text("path,camera\n1.jpg,a\n1.jpg,b,extra\n")
    with pytest.raises(DatasetLayoutError, match="expected 2 columns") as info:
        load_dataset("folder", csv_path)
    assert f"{csv_path}:3:" in str(info.value)


def test_folder_csv_missing_files_listed(tmp_path: Path, touch) -> None:
    touch(tmp_path, "1.jpg")
    csv_path = tmp_path / "list.csv"
    csv_path.write_text("".join(f"gone{i}.jpg,c\n" for i in range(7)) + "1.jpg,c\n")
    with pytest.raises(DatasetLayoutError, match="7 image") as info:
        load_dataset("folder", csv_path)
    message = str(info.value)
    assert str(tmp_path / "gone0.jpg") in message and "(7 in total)" in message


def test_folder_csv_empty(tmp_path: Path) -> None:
    csv_path = tmp_path / "list.csv"
    csv_path.write_text("path,camera\n")
    with pytest.raises(DatasetLayoutError, match="lists no images"):
        load_dataset("folder", csv_path)


def test_folder_datasets_name_their_cameras_and_market_ones_do_not(tmp_path, touch):
    touch(tmp_path / "footage" / "カメラ 2", "a.jpg")
    touch(tmp_path / "footage" / "cam10", "b.jpg")
    touch(tmp_path / "footage" / "cam1", "c.jpg")
    dataset = load_dataset("folder", tmp_path / "footage")
    assert dataset.camera_names == ["cam1", "cam10", "カメラ 2"]  # index order
    assert {Path(s.path).name: dataset.camera_name(s.camera) for s in dataset.train} == {
        "a.jpg": "カメラ 2",
        "b.jpg": "cam10",
        "c.jpg": "cam1",
    }
    (tmp_path / "list.csv").write_text("footage/cam1/c.jpg,north\nfootage/cam10/b.jpg,east\n")
    assert load_dataset("folder", tmp_path / "list.csv").camera_names == ["east", "north"]


def test_market_style_datasets_keep_numbered_cameras(tmp_path, market_tree):
    dataset = load_dataset("market1501", market_tree(tmp_path))
    assert dataset.camera_names is None
    assert {dataset.camera_name(s.camera) for s in dataset.train} == {"c1", "c2", "c6"}
