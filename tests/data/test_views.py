"""Training views (ICE): the strong and weak transforms, and images loaded as several views."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision.transforms as T
from PIL import Image, ImageFilter

from unreid.data.image_dataset import ImageDataset, ViewsDataset
from unreid.data.samples import Sample
from unreid.data.transforms import (
    VIEWS,
    RandomGaussianBlur,
    strong_transform,
    train_transform,
    view_transforms,
)
from unreid.data.transforms import test_transform as eval_transform  # not a test

H, W = 16, 8


def picture(seed: int = 0) -> Image.Image:
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (24, 12, 3), generator=g, dtype=torch.uint8)
    return Image.fromarray(pixels.numpy())


def test_strong_view_is_the_train_transform_plus_blur_and_more_erasing():
    strong, train = strong_transform(H, W).transforms, train_transform(H, W).transforms
    kinds = [type(t) for t in strong]
    assert kinds == [
        T.Resize, T.RandomHorizontalFlip, T.Pad, T.RandomCrop, T.RandomApply,
        T.ToTensor, T.Normalize, T.RandomErasing,
    ]  # fmt: skip
    assert [type(t) for t in train] == [k for k in kinds if k is not T.RandomApply]
    blur = strong[4]
    assert blur.p == 0.5 and isinstance(blur.transforms[0], RandomGaussianBlur)
    assert blur.transforms[0].sigma == (0.1, 2.0)
    assert strong[-1].p == 0.6 and train[-1].p == 0.5
    assert strong[-1].scale == train[-1].scale and strong[-1].ratio == train[-1].ratio
    ref = strong_transform(H, W, erasing_fill="reference").transforms[-1]
    assert ref.value == (0.485, 0.456, 0.406)
    torch.manual_seed(0)
    assert strong_transform(H, W)(picture()).shape == (3, H, W)


def test_blur_draws_its_sigma_from_torch_and_is_pils_gaussian_blur():
    img = picture(1)
    torch.manual_seed(3)
    got = RandomGaussianBlur((0.5, 1.5))(img)
    torch.manual_seed(3)
    radius = 0.5 + 1.0 * float(torch.rand(()))
    assert 0.5 <= radius <= 1.5
    assert got.tobytes() == img.filter(ImageFilter.GaussianBlur(radius=radius)).tobytes()
    assert got.tobytes() != img.tobytes()


def test_weak_view_is_the_test_transform():
    (weak,) = view_transforms(["weak"], H, W, "reference")
    img = picture(2)
    assert torch.equal(weak(img), eval_transform(H, W)(img))


def test_views_by_name_in_order_and_unknown_names_refused():
    assert set(VIEWS) == {"train", "strong", "weak"}
    ts = view_transforms(["strong", "strong", "weak"], H, W)
    assert len(ts) == 3 and ts[0] is not ts[1]
    with pytest.raises(ValueError, match="unknown view 'blurry'; available: train, strong, weak"):
        view_transforms(["strong", "blurry"], H, W)


def write(folder: Path, count: int) -> list[Sample]:
    samples = []
    for i in range(count):
        path = folder / f"{i}.png"
        picture(i).save(path)
        samples.append(Sample(str(path), camera=i % 2, pid=i))
    return samples


@pytest.mark.parametrize("cache", [False, True])
def test_views_dataset_stacks_each_images_views_in_order(tmp_path: Path, cache: bool):
    samples = write(tmp_path, 3)
    images = ImageDataset(samples, train_transform(H, W), cache=cache)
    transforms = view_transforms(["strong", "strong", "weak"], H, W)
    views = ViewsDataset(images, transforms)
    assert len(views) == 3 and views.samples == samples
    torch.manual_seed(7)
    stacked, index = views[1]
    torch.manual_seed(7)
    img = Image.open(samples[1].path).convert("RGB")
    want = torch.stack([t(img) for t in transforms])
    assert index == 1 and stacked.shape == (3, 3, H, W) and torch.equal(stacked, want)
    assert not torch.equal(stacked[0], stacked[1])  # two draws of the strong view
    if cache:  # the views read the cached images: the files are no longer needed
        for path in tmp_path.iterdir():
            path.unlink()
        assert views[0][0].shape == (3, 3, H, W)


def test_views_dataset_batches_through_a_loader_and_needs_a_view(tmp_path: Path):
    images = ImageDataset(write(tmp_path, 4), train_transform(H, W))
    loader = torch.utils.data.DataLoader(
        ViewsDataset(images, view_transforms(["strong", "weak"], H, W)), batch_size=4
    )
    batch, indexes = next(iter(loader))
    assert batch.shape == (4, 2, 3, H, W) and indexes.tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="at least one view"):
        ViewsDataset(images, [])
