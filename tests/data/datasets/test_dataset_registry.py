"""The dataset registry as a whole: every registered loader reads a small tree written in its
documented layout, names resolve case-insensitively, and unknown names list what exists."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from unreid.data.datasets import (
    DATASETS,
    format_report,
    list_datasets,
    load_dataset,
    load_dataset_with_report,
)
from unreid.data.samples import DatasetLayoutError

# Every layout below holds the same people: (pid, camera slot 0..2) per split.
TRAIN = [(1, 0), (1, 1), (2, 1), (2, 2)]
QUERY = [(1, 2), (2, 0)]
GALLERY = [(1, 0), (2, 2), (3, 1)]
MARKET_DIRS = ("bounding_box_train", "query", "bounding_box_test")

Namer = Callable[[int, int, int], str]
Writer = Callable[[Path, Callable[..., None]], Path]


def flat_splits(
    base: Path, touch, dirs: tuple[str, str, str], cams: tuple[int, int, int], name: Namer
) -> None:
    for folder, people in zip(dirs, (TRAIN, QUERY, GALLERY), strict=True):
        touch(base / folder, *(name(pid, cams[slot], i) for i, (pid, slot) in enumerate(people)))


def market(root: Path, touch) -> Path:
    name: Namer = lambda p, c, i: f"{p:04d}_c{c}s1_{i:06d}_00.jpg"  # noqa: E731
    flat_splits(root / "Market-1501-v15.09.15", touch, MARKET_DIRS, (1, 2, 6), name)
    return root


def duke(root: Path, touch) -> Path:
    name: Namer = lambda p, c, i: f"{p:04d}_c{c}_f{i:07d}.jpg"  # noqa: E731
    flat_splits(root / "DukeMTMC-reID", touch, MARKET_DIRS, (1, 5, 8), name)
    return root


def personx(root: Path, touch) -> Path:
    name: Namer = lambda p, c, i: f"{p:04d}_c{c}s1_{i:04d}.jpg"  # noqa: E731
    flat_splits(root / "personx" / "subset1", touch, MARKET_DIRS, (3, 10, 12), name)
    return root


def veri(root: Path, touch) -> Path:
    name: Namer = lambda p, c, i: f"{p:04d}_c{c:03d}_{i:08d}_0.jpg"  # noqa: E731
    dirs = ("image_train", "image_query", "image_test")
    flat_splits(root / "VeRi", touch, dirs, (1, 7, 20), name)
    return root


def synthetic(root: Path, touch) -> Path:
    name: Namer = lambda p, c, i: f"{p:04d}_c{c}s1_{i:06d}_00.jpg"  # noqa: E731
    flat_splits(root, touch, MARKET_DIRS, (1, 12, 40), name)
    return root


def msmt17(root: Path, touch) -> Path:
    base, cams = root / "MSMT17_V1", (1, 7, 15)

    def lines(people: list[tuple[int, int]], offset: int) -> list[str]:
        return [
            f"{p:04d}/{p:04d}_{i + offset:03d}_{cams[s]:02d}_0303morning_{i:04d}_0.jpg {p}"
            for i, (p, s) in enumerate(people)
        ]

    lists = {
        "list_train.txt": lines(TRAIN[:3], 0),
        "list_val.txt": lines(TRAIN[3:], 3),
        "list_query.txt": lines(QUERY, 0),
        "list_gallery.txt": lines(GALLERY, 10),
    }
    for list_name, rows in lists.items():
        folder = base / ("test" if list_name in ("list_query.txt", "list_gallery.txt") else "train")
        touch(folder, *(row.split()[0] for row in rows))
        (base / list_name).write_text("\n".join(rows) + "\n")
    return root


def folder(root: Path, touch) -> Path:
    for i, (_, slot) in enumerate(TRAIN):
        touch(root / ("cam1", "cam2", "cam10")[slot], f"{i:03d}.jpg")
    return root


LAYOUTS: dict[str, Writer] = {
    "dukemtmcreid": duke,
    "folder": folder,
    "market1501": market,
    "msmt17": msmt17,
    "personx": personx,
    "synthetic": synthetic,
    "veri": veri,
}
UNLABELLED = {"folder"}  # train only, no identities


@pytest.mark.parametrize("name", list_datasets())
def test_every_loader_reads_its_documented_layout(tmp_path: Path, touch, name: str) -> None:
    assert name in LAYOUTS, f"no test layout for dataset {name!r}: add a writer to LAYOUTS"
    root = LAYOUTS[name](tmp_path, touch)
    dataset, report = load_dataset_with_report(name, root)
    assert dataset.name == name
    splits = {"train": dataset.train, "query": dataset.query, "gallery": dataset.gallery}
    expected = {"train": TRAIN, "query": QUERY, "gallery": GALLERY}
    if name in UNLABELLED:
        expected = {"train": TRAIN, "query": [], "gallery": []}
        assert all(s.pid is None for s in dataset.train)
    else:
        assert sorted(s.pid for s in dataset.train) == sorted(p for p, _ in TRAIN)
    for split, samples in splits.items():
        people = expected[split]
        assert len(samples) == len(people), split
        assert len({s.camera for s in samples}) == len({slot for _, slot in people}), split
        assert all(s.camera >= 0 for s in samples)
        if people:
            assert report[split]["images"] == len(people)
    assert dataset.train_is_labelled is (name not in UNLABELLED)
    assert dataset.has_test_split is (name not in UNLABELLED)


@pytest.mark.parametrize("name", list_datasets())
def test_every_loader_reports_a_missing_root(tmp_path: Path, name: str) -> None:
    with pytest.raises(DatasetLayoutError, match=f"^{name}: root .* does not exist"):
        load_dataset(name, tmp_path / "nope")


def test_registry_lists_every_format() -> None:
    assert list_datasets() == [
        "dukemtmcreid",
        "folder",
        "market1501",
        "msmt17",
        "personx",
        "synthetic",
        "veri",
    ]
    assert "veri776" in DATASETS and DATASETS.canonical("veri776") == "veri"


def test_unknown_name_lists_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="market1501.*msmt17") as info:
        load_dataset("cuhk03", tmp_path)
    assert not isinstance(info.value, DatasetLayoutError)
    assert "cuhk03" in str(info.value)


def test_unknown_name_lists_every_registered_name(tmp_path: Path) -> None:
    with pytest.raises(KeyError) as info:
        load_dataset_with_report("  CUHK03 ", tmp_path)
    message = str(info.value)
    assert "'  CUHK03 '" in message  # as the caller spelled it
    assert all(name in message for name in list_datasets())


def test_names_are_case_and_space_insensitive(tmp_path: Path, touch) -> None:
    dataset, _ = load_dataset_with_report(" Synthetic ", synthetic(tmp_path, touch))
    assert dataset.name == "synthetic"


def test_load_dataset_logs_one_summary_line(tmp_path: Path, caplog, market_tree) -> None:
    market_tree(tmp_path / "Market-1501-v15.09.15")
    with caplog.at_level(logging.INFO, logger="unreid.data.datasets"):
        dataset = load_dataset("Market1501", tmp_path)
    assert dataset.name == "market1501"
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1
    assert "train 3 images (2 non-image entries ignored)" in lines[0]
    assert "gallery 2 images (2 junk dropped, 1 distractors kept)" in lines[0]


def test_format_report_lists_only_nonzero_counts(tmp_path: Path, market_tree) -> None:
    dataset, report = load_dataset_with_report("market1501", market_tree(tmp_path))
    line = format_report(dataset, report)
    assert line.startswith(f"market1501 from {tmp_path}: train 3 images")
    assert "query 2 images;" in line and "missing" not in line
