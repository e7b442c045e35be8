"""(image, index) pairs from disk or from the in-memory cache."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from unreid.data.image_dataset import ImageDataset, read_image
from unreid.data.samples import Sample
from unreid.data.transforms import test_transform as eval_transform  # not a test

TRANSFORM = eval_transform(16, 8)


def write_images(folder: Path, count: int) -> list[Sample]:
    samples = []
    for i in range(count):
        path = folder / f"{i}.png"
        Image.new("RGB", (6 + i, 12), (30 * i, 100, 200 - 20 * i)).save(path)
        samples.append(Sample(str(path), camera=i % 2, pid=i))
    return samples


def test_items_are_transformed_image_and_index(tmp_path: Path) -> None:
    samples = write_images(tmp_path, 3)
    dataset = ImageDataset(samples, TRANSFORM)
    assert len(dataset) == 3
    for i in range(3):
        image, index = dataset[i]
        assert index == i
        assert isinstance(image, torch.Tensor) and image.shape == (3, 16, 8)
    assert not torch.equal(dataset[0][0], dataset[1][0])


def test_cache_returns_the_same_tensors_without_the_files(tmp_path: Path) -> None:
    samples = write_images(tmp_path, 3)
    plain = ImageDataset(samples, TRANSFORM)
    cached = ImageDataset(samples, TRANSFORM, cache=True)
    expected = [plain[i][0] for i in range(3)]
    for path in tmp_path.iterdir():
        path.unlink()
    for i in range(3):
        image, index = cached[i]
        assert index == i and torch.equal(image, expected[i])
    with pytest.raises(OSError):
        plain[0]  # without the cache the file is needed


def test_grayscale_images_become_rgb(tmp_path: Path) -> None:
    Image.new("L", (4, 4), 128).save(tmp_path / "g.png")
    assert read_image(str(tmp_path / "g.png")).mode == "RGB"


@pytest.mark.parametrize("cache", [False, True])
def test_index_out_of_range(tmp_path: Path, cache: bool) -> None:
    dataset = ImageDataset(write_images(tmp_path, 2), TRANSFORM, cache=cache)
    with pytest.raises(IndexError):
        dataset[2]


def test_unreadable_image_names_its_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    dataset = ImageDataset([Sample(str(bad), 0)], TRANSFORM)
    with pytest.raises(OSError, match=f"cannot read image {bad}"):
        dataset[0]
    with pytest.raises(OSError, match="cannot read image"):
        ImageDataset([Sample(str(tmp_path / "missing.jpg"), 0)], TRANSFORM, cache=True)
