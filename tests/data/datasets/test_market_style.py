"""Market-style loaders (Market-1501, DukeMTMC-reID, PersonX, VeRi-776, synthetic): they read
names only, so every test writes empty files with the real naming schemes."""

from __future__ import annotations

from pathlib import Path

import pytest

from unreid.data.datasets import load_dataset, load_dataset_with_report
from unreid.data.samples import DatasetLayoutError

# --------------------------------------------------------------------------- Market-1501


def test_market_parses_names_and_counts_drops(tmp_path: Path, market_tree) -> None:
    base = market_tree(tmp_path / "Market-1501-v15.09.15")
    dataset, report = load_dataset_with_report("market1501", tmp_path)

    assert dataset.root == str(base)
    assert [(Path(s.path).name, s.pid, s.camera, s.frame) for s in dataset.train] == [
        ("0002_c1s1_000451_03.jpg", 2, 0, 451),
        ("0002_c2s1_000301_01.jpg", 2, 1, 301),
        ("0007_c6s3_012345_00.JPG", 7, 5, 12345),
    ]
    assert [(s.pid, s.camera) for s in dataset.query] == [(2, 2), (7, 0)]
    assert sorted((s.pid, s.camera) for s in dataset.gallery) == [(0, 0), (2, 3)]
    for split in (dataset.train, dataset.query, dataset.gallery):
        assert [s.path for s in split] == sorted(s.path for s in split)
    assert report["train"] == {
        "images": 3,
        "junk": 0,
        "distractors": 0,
        "ignored_files": 2,
        "missing": 0,
    }
    assert report["gallery"]["junk"] == 2
    assert report["gallery"]["distractors"] == 1
    assert report["gallery"]["images"] == 2


@pytest.mark.parametrize("folder", ["Market-1501-v15.09.15", "market1501", "Market-1501", "."])
def test_market_root_may_be_dataset_or_parent(tmp_path: Path, folder: str, market_tree) -> None:
    market_tree(tmp_path / folder)
    dataset, _ = load_dataset_with_report("market1501", tmp_path)
    assert len(dataset.train) == 3
    assert dataset.has_test_split


def test_market_missing_folder_names_path_and_contents(tmp_path: Path, market_tree) -> None:
    base = market_tree(tmp_path / "Market-1501-v15.09.15")
    (base / "query").rename(base / "queries")
    with pytest.raises(DatasetLayoutError) as info:
        load_dataset("market1501", tmp_path)
    message = str(info.value)
    assert message.startswith(f"market1501: expected folder {base / 'query'}")
    assert "bounding_box_train/, query/, bounding_box_test/" in message
    assert "queries/" in message


def test_market_nothing_there_mentions_tried_names(tmp_path: Path, touch) -> None:
    touch(tmp_path, "notes.txt")
    with pytest.raises(DatasetLayoutError, match="Market-1501-v15.09.15/") as info:
        load_dataset("market1501", tmp_path)
    assert str(tmp_path / "bounding_box_train") in str(info.value)
    assert "notes.txt" in str(info.value)


def test_missing_root_is_reported(tmp_path: Path) -> None:
    with pytest.raises(DatasetLayoutError, match="does not exist"):
        load_dataset("market1501", tmp_path / "nope")


def test_market_bad_name_names_file_and_pattern(tmp_path: Path, touch, market_tree) -> None:
    base = market_tree(tmp_path)
    touch(base / "query", "person2_cam1.jpg")
    with pytest.raises(DatasetLayoutError) as info:
        load_dataset("market1501", tmp_path)
    message = str(info.value)
    assert str(base / "query" / "person2_cam1.jpg") in message
    assert "0002_c1s1_000451_03.jpg" in message


def test_market_camera_out_of_range(tmp_path: Path, touch, market_tree) -> None:
    base = market_tree(tmp_path)
    touch(base / "bounding_box_test", "0002_c7s1_000100_01.jpg")
    with pytest.raises(DatasetLayoutError, match=r"outside 1\.\.6") as info:
        load_dataset("market1501", tmp_path)
    assert "0002_c7s1_000100_01.jpg" in str(info.value)


def test_market_split_of_only_junk_is_an_error(tmp_path: Path, touch, market_tree) -> None:
    base = market_tree(tmp_path)
    for path in (base / "query").iterdir():
        path.unlink()
    touch(base / "query", "-1_c1s1_000001_00.jpg", ".DS_Store")
    with pytest.raises(DatasetLayoutError, match="no usable images") as info:
        load_dataset("market1501", tmp_path)
    assert str(base / "query") in str(info.value)
    assert "1 junk dropped" in str(info.value)


def test_synthetic_reads_root_directly(tmp_path: Path, touch, market_tree) -> None:
    market_tree(tmp_path / "out")
    touch(tmp_path / "out" / "bounding_box_train", "0009_c12s1_000001_00.jpg")
    dataset, _ = load_dataset_with_report("synthetic", tmp_path / "out")
    assert dataset.name == "synthetic"
    assert max(s.camera for s in dataset.train) == 11
    with pytest.raises(DatasetLayoutError, match="expected folder"):
        load_dataset("synthetic", tmp_path)


# --------------------------------------------------------------------------- DukeMTMC-reID


def test_duke_parses_names(tmp_path: Path, touch) -> None:
    base = tmp_path / "DukeMTMC-reID"
    touch(base / "bounding_box_train", "0005_c2_f0046985.jpg", "0005_c8_f0000001.jpg")
    touch(base / "query", "0005_c1_f0000100.jpg")
    touch(base / "bounding_box_test", "0005_c3_f0000200.jpg", "0000_c4_f0000300.jpg")
    dataset, report = load_dataset_with_report("dukemtmcreid", tmp_path)
    assert [(s.pid, s.camera, s.frame) for s in dataset.train] == [(5, 1, 46985), (5, 7, 1)]
    assert report["gallery"]["distractors"] == 1


def test_duke_rejects_market_names_and_camera_9(tmp_path: Path, touch) -> None:
    base = tmp_path / "DukeMTMC-reID"
    touch(base / "bounding_box_train", "0002_c1s1_000451_03.jpg")
    touch(base / "query", "0005_c1_f0000100.jpg")
    touch(base / "bounding_box_test", "0005_c3_f0000200.jpg")
    with pytest.raises(DatasetLayoutError, match="_f<frame>"):
        load_dataset("dukemtmcreid", tmp_path)
    (base / "bounding_box_train" / "0002_c1s1_000451_03.jpg").unlink()
    touch(base / "bounding_box_train", "0005_c9_f0046985.jpg")
    with pytest.raises(DatasetLayoutError, match=r"outside 1\.\.8"):
        load_dataset("dukemtmcreid", tmp_path)


# --------------------------------------------------------------------------- PersonX


def test_personx_camera_remap(tmp_path: Path, touch) -> None:
    base = tmp_path / "PersonX"
    touch(
        base / "bounding_box_train",
        *(f"0001_c{cam}s1_{i:04d}.jpg" for i, cam in enumerate([3, 4, 8, 10, 11, 12])),
    )
    touch(base / "query", "0002_c3s1_0001.jpg")
    touch(base / "bounding_box_test", "0002_c12s1_0002.jpg")
    dataset, _ = load_dataset_with_report("personx", tmp_path)
    by_raw = {Path(s.path).name.split("_")[1]: s.camera for s in dataset.train}
    assert by_raw == {"c3s1": 0, "c4s1": 1, "c8s1": 2, "c10s1": 3, "c11s1": 4, "c12s1": 5}
    assert all(s.frame is None and s.pid == 1 for s in dataset.train)
    touch(base / "query", "0002_c5s1_0003.jpg")
    with pytest.raises(DatasetLayoutError, match="one of 3, 4, 8, 10, 11, 12") as info:
        load_dataset("personx", tmp_path)
    assert "0002_c5s1_0003.jpg" in str(info.value)


# --------------------------------------------------------------------------- VeRi-776


@pytest.mark.parametrize("name", ["veri", "VeRi776"])
def test_veri_parses_vehicle_camera_frame(tmp_path: Path, name: str, veri_tree) -> None:
    base = veri_tree(tmp_path / "VeRi")
    dataset, report = load_dataset_with_report(name, tmp_path)
    assert dataset.name == "veri" and dataset.root == str(base)
    assert [(Path(s.path).name, s.pid, s.camera, s.frame) for s in dataset.train] == [
        ("0001_c001_00016450_0.jpg", 1, 0, 16450),
        ("0001_c020_00016460_1.jpg", 1, 19, 16460),
        ("0776_c010_00000123_0.jpg", 776, 9, 123),
    ]
    assert [(s.pid, s.camera, s.frame) for s in dataset.query] == [(2, 1, 30600)]
    assert [(s.pid, s.camera) for s in dataset.gallery] == [(2, 2)]
    assert report["gallery"]["junk"] == 1 and report["gallery"]["images"] == 1
    assert report["train"] == {
        "images": 3,
        "junk": 0,
        "distractors": 0,
        "ignored_files": 0,
        "missing": 0,
    }


@pytest.mark.parametrize("folder", ["VeRi", "veri/VeRi", "veri", "."])
def test_veri_root_may_be_dataset_or_parent(tmp_path: Path, folder: str, veri_tree) -> None:
    base = veri_tree(tmp_path / folder)
    dataset, _ = load_dataset_with_report("veri", tmp_path)
    assert Path(dataset.root) == base.absolute()
    assert len(dataset.train) == 3 and dataset.has_test_split


def test_veri_bad_name_is_reported_with_count_and_pattern(tmp_path: Path, touch, veri_tree) -> None:
    base = veri_tree(tmp_path / "VeRi")
    touch(base / "image_train", "0001_c001_00016450.jpg", "car_c1.jpg", "notes.txt")
    with pytest.raises(DatasetLayoutError) as info:
        load_dataset("veri", tmp_path)
    message = str(info.value)
    assert message.startswith("veri: 2 image file(s)")
    assert str(base / "image_train" / "car_c1.jpg") in message
    assert "0001_c001_00016450_0.jpg" in message  # the example name
    assert "<vehicle id>_c<camera>_<frame>_<index>.jpg" in message


@pytest.mark.parametrize("camera", ["c000", "c021"])
def test_veri_camera_outside_1_to_20(tmp_path: Path, camera: str, touch, veri_tree) -> None:
    base = veri_tree(tmp_path / "VeRi")
    touch(base / "image_test", f"0002_{camera}_00000001_0.jpg")
    with pytest.raises(DatasetLayoutError, match=r"outside 1\.\.20") as info:
        load_dataset("veri", tmp_path)
    assert f"0002_{camera}_00000001_0.jpg" in str(info.value)


def test_veri_missing_folder_names_expected_layout(tmp_path: Path, veri_tree) -> None:
    base = veri_tree(tmp_path / "VeRi")
    (base / "image_test").rename(base / "image_gallery")
    with pytest.raises(DatasetLayoutError) as info:
        load_dataset("veri", tmp_path)
    message = str(info.value)
    assert message.startswith(f"veri: expected folder {base / 'image_test'}")
    assert "image_train/, image_query/, image_test/" in message
    assert "image_gallery/" in message


def test_veri_nothing_there_mentions_tried_names(tmp_path: Path, touch) -> None:
    touch(tmp_path, "readme.txt")
    with pytest.raises(DatasetLayoutError, match="VeRi/") as info:
        load_dataset("veri776", tmp_path)
    assert str(tmp_path / "image_train") in str(info.value)
