"""Writers of fake dataset trees. Loaders read names only, so empty files with the real
naming schemes are enough; the writers are fixtures so every test module here can use them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest


def touch_files(folder: Path, *names: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def write_market_tree(base: Path) -> Path:
    touch_files(
        base / "bounding_box_train",
        "0002_c1s1_000451_03.jpg",
        "0002_c2s1_000301_01.jpg",
        "0007_c6s3_012345_00.JPG",
        "Thumbs.db",
        "readme.txt",
    )
    touch_files(base / "query", "0002_c3s1_000551_01.jpg", "0007_c1s2_000010_00.png")
    touch_files(
        base / "bounding_box_test",
        "0002_c4s2_000100_01.jpg",
        "0000_c1s1_000001_00.jpg",
        "-1_c2s1_000002_00.jpg",
        "-1_c5s1_000003_00.jpg",
    )
    return base


def write_veri_tree(base: Path) -> Path:
    touch_files(
        base / "image_train",
        "0001_c001_00016450_0.jpg",
        "0001_c020_00016460_1.jpg",
        "0776_c010_00000123_0.jpg",
    )
    touch_files(base / "image_query", "0002_c002_00030600_0.jpg")
    touch_files(base / "image_test", "0002_c003_00084280_0.jpg", "-1_c004_00000001_0.jpg")
    touch_files(base, "name_train.txt", "train_label.xml", "gt_index.txt")  # present, not needed
    return base


def write_msmt_lists(base: Path, train_dir: str = "train", test_dir: str = "test") -> Path:
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
        touch_files(folder, *(line.split()[0] for line in lines if line))
    return base


@pytest.fixture
def touch() -> Callable[..., None]:
    return touch_files


@pytest.fixture
def market_tree() -> Callable[[Path], Path]:
    return write_market_tree


@pytest.fixture
def veri_tree() -> Callable[[Path], Path]:
    return write_veri_tree


@pytest.fixture
def msmt_lists() -> Callable[..., Path]:
    return write_msmt_lists
