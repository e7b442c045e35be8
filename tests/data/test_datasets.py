"""Loaders read names only, so every test writes empty files with the real naming schemes."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from unreid.data.datasets import (
    MARKET_FORMAT,
    available_datasets,
    load_dataset,
    load_dataset_with_report,
    scan_image_folder,
)
from unreid.data.samples import DatasetLayoutError


def touch(folder: Path, *names: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def market_tree(base: Path) -> Path:
    touch(
        base / "bounding_box_train",
        "0002_c1s1_000451_03.jpg",
        "0002_c2s1_000301_01.jpg",
        "0007_c6s3_012345_00.JPG",
        "Thumbs.db",
        "readme.txt",
    )
    touch(base / "query", "0002_c3s1_000551_01.jpg", "0007_c1s2_000010_00.png")
    touch(
        base / "bounding_box_test",
        "0002_c4s2_000100_01.jpg",
        "0000_c1s1_000001_00.jpg",
        "-1_c2s1_000002_00.jpg",
        "-1_c5s1_000003_00.jpg",
    )
    return base


# --------------------------------------------------------------------------- registry


def test_registry_lists_every_format() -> None:
    assert available_datasets() == [
        "dukemtmcreid",
        "folder",
        "market1501",
        "msmt17",
        "personx",
        "synthetic",
        "veri",
        "veri776",
    ]


def test_unknown_name_lists_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="market1501.*msmt17") as info:
        load_dataset("cuhk03", tmp_path)
    assert not isinstance(info.value, DatasetLayoutError)
    assert "cuhk03" in str(info.value)


def test_load_dataset_logs_one_summary_line(tmp_path: Path, caplog) -> None:
    market_tree(tmp_path / "Market-1501-v15.09.15")
    with caplog.at_level(logging.INFO, logger="unreid.data.datasets"):
        dataset = load_dataset("Market1501", tmp_path)
    assert dataset.name == "market1501"
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1
    assert "train 3 images (2 non-image entries ignored)" in lines[0]
    assert "gallery 2 images (2 junk dropped, 1 distractors kept)" in lines[0]


# --------------------------------------------------------------------------- Market-1501


def test_market_parses_names_and_counts_drops(tmp_path: Path) -> None:
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
def test_market_root_may_be_dataset_or_parent(tmp_path: Path, folder: str) -> None:
    market_tree(tmp_path / folder)
    dataset, _ = load_dataset_with_report("market1501", tmp_path)
    assert len(dataset.train) == 3
    assert dataset.has_test_split


def test_market_missing_folder_names_path_and_contents(tmp_path: Path) -> None:
    base = market_tree(tmp_path / "Market-1501-v15.09.15")
    (base / "query").rename(base / "queries")
    with pytest.raises(DatasetLayoutError) as info:
        load_dataset("market1501", tmp_path)
    message = str(info.value)
    assert message.startswith(f"market1501: expected folder {base / 'query'}")
    assert "bounding_box_train/, query/, bounding_box_test/" in message
    assert "queries/" in message


def test_market_nothing_there_mentions_tried_names(tmp_path: Path) -> None:
    touch(tmp_path, "notes.txt")
    with pytest.raises(DatasetLayoutError, match="Market-1501-v15.09.15/") as info:
        load_dataset("market1501", tmp_path)
    assert str(tmp_path / "bounding_box_train") in str(info.value)
    assert "notes.txt" in str(info.value)


def test_missing_root_is_reported(tmp_path: Path) -> None:
    with pytest.raises(DatasetLayoutError, match="does not exist"):
        load_dataset("market1501", tmp_path / "nope")


def test_market_bad_name_names_file_and_pattern(tmp_path: Path) -> None:
    base = market_tree(tmp_path)
    touch(base / "query", "person2_cam1.jpg")
    with pytest.raises(DatasetLayoutError) as info:
        load_dataset("market1501", tmp_path)
    message = str(info.value)
    assert str(base / "query" / "person2_cam1.jpg") in message
    assert "0002_c1s1_000451_03.jpg" in message


def test_market_camera_out_of_range(tmp_path: Path) -> None:
    base = market_tree(tmp_path)
    touch(base / "bounding_box_test", "0002_c7s1_000100_01.jpg")
    with pytest.raises(DatasetLayoutError, match=r"outside 1\.\.6") as info:
        load_dataset("market1501", tmp_path)
    assert "0002_c7s1_000100_01.jpg" in str(info.value)


def test_market_split_of_only_junk_is_an_error(tmp_path: Path) -> None:
    base = market_tree(tmp_path)
    for path in (base / "query").iterdir():
        path.unlink()
    touch(base / "query", "-1_c1s1_000001_00.jpg", ".DS_Store")
    with pytest.raises(DatasetLayoutError, match="no usable images") as info:
        load_dataset("market1501", tmp_path)
    assert str(base / "query") in str(info.value)
    assert "1 junk dropped" in str(info.value)


def test_scan_helper_returns_report(tmp_path: Path) -> None:
    touch(tmp_path, "0001_c1s1_000001_00.bmp", "-1_c1s1_000002_00.jpeg", "sub/x.jpg")
    samples, report = scan_image_folder(tmp_path, MARKET_FORMAT)
    assert [s.pid for s in samples] == [1]
    assert report == {"images": 1, "junk": 1, "distractors": 0, "ignored_files": 1, "missing": 0}


def test_synthetic_reads_root_directly(tmp_path: Path) -> None:
    market_tree(tmp_path / "out")
    touch(tmp_path / "out" / "bounding_box_train", "0009_c12s1_000001_00.jpg")
    dataset, _ = load_dataset_with_report("synthetic", tmp_path / "out")
    assert dataset.name == "synthetic"
    assert max(s.camera for s in dataset.train) == 11
    with pytest.raises(DatasetLayoutError, match="expected folder"):
        load_dataset("synthetic", tmp_path)


# --------------------------------------------------------------------------- DukeMTMC-reID


def test_duke_parses_names(tmp_path: Path) -> None:
    base = tmp_path / "DukeMTMC-reID"
    touch(base / "bounding_box_train", "0005_c2_f0046985.jpg", "0005_c8_f0000001.jpg")
    touch(base / "query", "0005_c1_f0000100.jpg")
    touch(base / "bounding_box_test", "0005_c3_f0000200.jpg", "0000_c4_f0000300.jpg")
    dataset, report = load_dataset_with_report("dukemtmcreid", tmp_path)
    assert [(s.pid, s.camera, s.frame) for s in dataset.train] == [(5, 1, 46985), (5, 7, 1)]
    assert report["gallery"]["distractors"] == 1


def test_duke_rejects_market_names_and_camera_9(tmp_path: Path) -> None:
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


# --------------------------------------------------------------------------- MSMT17


def msmt_lists(base: Path, train_dir: str = "train", test_dir: str = "test") -> Path:
    lists = {
        "list_train.txt": ["0000/0000_000_01_0303morning_0015_0.jpg 0"],
        "list_val.txt": ["0001/0001_000_15_0113noon_0456_1.jpg 1", ""],
        "list_query.txt": ["0000/0000_000_03_0302afternoon_0100_0.jpg 0"],
        "list_gallery.txt": [
            "0000/0000_001_04_0302afternoon_0200_0.jpg 0",
            "0002/0002_000_07_0113noon_0300_0.jpg 2",
        ],
    }
    for name, lines in lists.items():
        base.mkdir(parents=True, exist_ok=True)
        (base / name).write_text("\n".join(lines) + "\n")
        folder = base / (train_dir if name in ("list_train.txt", "list_val.txt") else test_dir)
        touch(folder, *(line.split()[0] for line in lines if line))
    return base


def test_msmt17_v1_lists(tmp_path: Path) -> None:
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


def test_msmt17_v2_folder_names(tmp_path: Path) -> None:
    base = msmt_lists(tmp_path / "MSMT17_V2", "mask_train_v2", "mask_test_v2")
    dataset, _ = load_dataset_with_report("msmt17", tmp_path)
    assert dataset.root == str(base)
    assert "mask_train_v2" in dataset.train[0].path
    assert "mask_test_v2" in dataset.gallery[0].path


def test_msmt17_market_style_release(tmp_path: Path) -> None:
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
def test_msmt17_malformed_line_names_file_and_line(tmp_path: Path, line: str, why: str) -> None:
    base = msmt_lists(tmp_path / "MSMT17_V1")
    with open(base / "list_gallery.txt", "a") as handle:
        handle.write(line + "\n")
    with pytest.raises(DatasetLayoutError, match=why) as info:
        load_dataset("msmt17", tmp_path)
    assert f"{base / 'list_gallery.txt'}:3:" in str(info.value)


def test_msmt17_missing_listed_files_raise_with_paths(tmp_path: Path) -> None:
    base = msmt_lists(tmp_path / "MSMT17_V1")
    (base / "test/0002/0002_000_07_0113noon_0300_0.jpg").unlink()
    (base / "train/0000/0000_000_01_0303morning_0015_0.jpg").unlink()
    with pytest.raises(DatasetLayoutError, match="2 image") as info:
        load_dataset("msmt17", tmp_path)
    assert "0002_000_07_0113noon_0300_0.jpg" in str(info.value)
    assert "0000_000_01_0303morning_0015_0.jpg" in str(info.value)


def test_msmt17_missing_list_file(tmp_path: Path) -> None:
    base = msmt_lists(tmp_path / "MSMT17_V1")
    (base / "list_val.txt").unlink()
    with pytest.raises(DatasetLayoutError, match="expected list file") as info:
        load_dataset("msmt17", tmp_path)
    assert str(base / "list_val.txt") in str(info.value)


def test_msmt17_lists_without_image_folders(tmp_path: Path) -> None:
    base = msmt_lists(tmp_path / "MSMT17_V1")
    (base / "test").rename(base / "images_test")
    with pytest.raises(DatasetLayoutError, match="mask_train_v2/") as info:
        load_dataset("msmt17", tmp_path)
    assert "images_test/" in str(info.value)


def test_msmt17_no_layout_lists_all_three(tmp_path: Path) -> None:
    touch(tmp_path / "msmt", "a.jpg")
    with pytest.raises(DatasetLayoutError) as info:
        load_dataset("msmt17", tmp_path)
    message = str(info.value)
    assert "(a) MSMT17_V1/" in message and "(b) MSMT17_V2/" in message
    assert "(c) Market-style" in message
    assert "msmt/" in message and str(tmp_path) in message


# --------------------------------------------------------------------------- PersonX


def test_personx_camera_remap(tmp_path: Path) -> None:
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


def veri_tree(base: Path) -> Path:
    touch(
        base / "image_train",
        "0001_c001_00016450_0.jpg",
        "0001_c020_00016460_1.jpg",
        "0776_c010_00000123_0.jpg",
    )
    touch(base / "image_query", "0002_c002_00030600_0.jpg")
    touch(base / "image_test", "0002_c003_00084280_0.jpg", "-1_c004_00000001_0.jpg")
    touch(base, "name_train.txt", "train_label.xml", "gt_index.txt")  # present, not needed
    return base


@pytest.mark.parametrize("name", ["veri", "VeRi776"])
def test_veri_parses_vehicle_camera_frame(tmp_path: Path, name: str) -> None:
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
def test_veri_root_may_be_dataset_or_parent(tmp_path: Path, folder: str) -> None:
    base = veri_tree(tmp_path / folder)
    dataset, _ = load_dataset_with_report("veri", tmp_path)
    assert Path(dataset.root) == base.absolute()
    assert len(dataset.train) == 3 and dataset.has_test_split


def test_veri_bad_name_is_reported_with_count_and_pattern(tmp_path: Path) -> None:
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
def test_veri_camera_outside_1_to_20(tmp_path: Path, camera: str) -> None:
    base = veri_tree(tmp_path / "VeRi")
    touch(base / "image_test", f"0002_{camera}_00000001_0.jpg")
    with pytest.raises(DatasetLayoutError, match=r"outside 1\.\.20") as info:
        load_dataset("veri", tmp_path)
    assert f"0002_{camera}_00000001_0.jpg" in str(info.value)


def test_veri_missing_folder_names_expected_layout(tmp_path: Path) -> None:
    base = veri_tree(tmp_path / "VeRi")
    (base / "image_test").rename(base / "image_gallery")
    with pytest.raises(DatasetLayoutError) as info:
        load_dataset("veri", tmp_path)
    message = str(info.value)
    assert message.startswith(f"veri: expected folder {base / 'image_test'}")
    assert "image_train/, image_query/, image_test/" in message
    assert "image_gallery/" in message


def test_veri_nothing_there_mentions_tried_names(tmp_path: Path) -> None:
    touch(tmp_path, "readme.txt")
    with pytest.raises(DatasetLayoutError, match="VeRi/") as info:
        load_dataset("veri776", tmp_path)
    assert str(tmp_path / "image_train") in str(info.value)


# --------------------------------------------------------------------------- folder


def test_folder_camera_subfolders(tmp_path: Path) -> None:
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


def test_folder_images_in_root_explain_layout(tmp_path: Path) -> None:
    touch(tmp_path, "a.jpg", "b.jpg")
    with pytest.raises(DatasetLayoutError, match=r"<root>/<camera>/<image>") as info:
        load_dataset("folder", tmp_path)
    assert str(tmp_path) in str(info.value) and "a.jpg" in str(info.value)


def test_folder_empty(tmp_path: Path) -> None:
    touch(tmp_path / "cam1", "readme.md")
    with pytest.raises(DatasetLayoutError, match="no images found") as info:
        load_dataset("folder", tmp_path)
    assert str(tmp_path) in str(info.value)


def test_folder_csv_with_and_without_header(tmp_path: Path) -> None:
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


def test_folder_csv_bad_row_names_line(tmp_path: Path) -> None:
    touch(tmp_path, "1.jpg")
    csv_path = tmp_path / "list.csv"
    csv_path.write_text("path,camera\n1.jpg,a\n1.jpg,b,extra\n")
    with pytest.raises(DatasetLayoutError, match="expected 2 columns") as info:
        load_dataset("folder", csv_path)
    assert f"{csv_path}:3:" in str(info.value)


def test_folder_csv_missing_files_listed(tmp_path: Path) -> None:
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
