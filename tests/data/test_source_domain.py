"""The labelled source set: class ids from the sorted distinct pids, cameras alongside, and a
clear refusal of an unlabelled source."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unreid.data.image_dataset import ImageDataset
from unreid.data.samples import Sample
from unreid.data.source_domain import load_source, source_domain
from unreid.data.transforms import test_transform as eval_transform  # not a test

TRANSFORM = eval_transform(16, 8)


def write_synthetic(root: Path, train: list[tuple[int, int]]) -> Path:
    """A Market-layout tree with real (tiny) images; train as (pid, camera 1-based)."""
    splits = {"bounding_box_train": train, "query": [(1, 1)], "bounding_box_test": [(1, 2)]}
    for folder, people in splits.items():
        (root / folder).mkdir(parents=True)
        for i, (pid, cam) in enumerate(people):
            colour = (40 * i % 255, 10 * pid % 255, 30)
            name = f"{pid:04d}_c{cam}s1_{i:06d}_00.png"
            Image.new("RGB", (8, 16), colour).save(root / folder / name)
    return root


def test_class_ids_are_ranks_of_the_distinct_pids() -> None:
    samples = [
        Sample(f"{i}.jpg", cam, pid)
        for i, (pid, cam) in enumerate([(10, 0), (3, 2), (10, 1), (5, 0)])
    ]
    source = source_domain(samples, TRANSFORM)
    assert source.labels.dtype == torch.long and source.labels.tolist() == [2, 0, 2, 1]
    assert source.cameras.dtype == torch.long and source.cameras.tolist() == [0, 2, 1, 0]
    assert source.samples == samples
    assert isinstance(source.images, ImageDataset) and source.images.samples == samples


def test_load_source_reads_the_training_split(tmp_path: Path, caplog) -> None:
    root = write_synthetic(tmp_path, [(7, 1), (2, 2), (7, 3), (9, 1)])
    with caplog.at_level(logging.INFO, logger="unreid"):
        source = load_source("synthetic", root, TRANSFORM)
    pids = [s.pid for s in source.samples]
    assert sorted(pids) == [2, 7, 7, 9]
    _, expected = np.unique(pids, return_inverse=True)
    assert source.labels.tolist() == expected.tolist()
    assert source.cameras.tolist() == [s.camera for s in source.samples]
    assert len(source.images) == 4
    assert any(r.getMessage().startswith("source domain: synthetic") for r in caplog.records)


def test_cached_source_images_are_read_once(tmp_path: Path) -> None:
    root = write_synthetic(tmp_path, [(7, 1), (2, 2)])
    source = load_source("synthetic", root, TRANSFORM, cache_images=True)
    first = source.images[0][0]
    for path in (root / "bounding_box_train").iterdir():
        path.unlink()
    assert torch.equal(source.images[0][0], first)


def test_unlabelled_source_is_refused(tmp_path: Path) -> None:
    (tmp_path / "cam1").mkdir()
    (tmp_path / "cam1" / "a.jpg").write_bytes(b"")
    with pytest.raises(ValueError) as info:
        load_source("folder", tmp_path, TRANSFORM)
    assert str(info.value) == (
        f"data.source='folder' ({tmp_path}): the source domain needs identity labels "
        "on every training image"
    )
