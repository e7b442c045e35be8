"""The train and test transforms: sizes, flip rate, random erasing, ImageNet normalisation."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from unreid.data.transforms import IMAGENET_MEAN, IMAGENET_STD, train_transform
from unreid.data.transforms import test_transform as eval_transform  # not a test

MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(3, 1, 1)
DRAWS = 400


def uniform(colour: tuple[int, int, int], size: tuple[int, int] = (64, 128)) -> Image.Image:
    return Image.new("RGB", size, colour)


@pytest.mark.parametrize("make", [train_transform, eval_transform])
@pytest.mark.parametrize("source_size", [(30, 90), (64, 128), (200, 100)])
def test_output_is_three_channels_at_the_requested_size(make, source_size) -> None:
    torch.manual_seed(0)
    out = make(128, 64)(uniform((10, 200, 30), source_size))
    assert out.shape == (3, 128, 64) and out.dtype == torch.float32


def test_normalisation_uses_the_imagenet_mean_and_std() -> None:
    white = eval_transform(32, 16)(uniform((255, 255, 255)))
    black = eval_transform(32, 16)(uniform((0, 0, 0)))
    assert torch.allclose(white, ((1 - MEAN) / STD).expand_as(white), atol=1e-5)
    assert torch.allclose(black, (-MEAN / STD).expand_as(black), atol=1e-5)
    mean_colour = tuple(round(255 * m) for m in IMAGENET_MEAN)
    grey = eval_transform(32, 16)(uniform(mean_colour))
    assert grey.abs().max() < 1.5 / 255 / min(IMAGENET_STD)
    torch.manual_seed(0)
    train_white = train_transform(32, 16)(uniform((255, 255, 255)))
    top = train_white.amax(dim=(1, 2))  # unpadded, unerased pixels
    assert torch.allclose(top, ((1 - MEAN) / STD).view(3), atol=1e-5)


def test_flip_happens_on_about_half_of_the_draws() -> None:
    # Left half white, right half black; the pad-and-crop shift is at most 10 px, so the
    # strips 20..30 and 98..108 stay on their side and only a flip swaps them.
    image = Image.new("RGB", (128, 32), (0, 0, 0))
    image.paste((255, 255, 255), (0, 0, 64, 32))
    transform = train_transform(32, 128)
    torch.manual_seed(0)
    flips = unflipped = 0
    for _ in range(DRAWS):
        out = transform(image)
        left = int((out[:, :, 20:31] > 1).all(dim=0).sum())
        right = int((out[:, :, 98:109] > 1).all(dim=0).sum())
        flips += right > left
        unflipped += left > right
    assert flips + unflipped >= DRAWS - 5  # erasing rarely hides a whole strip
    assert 0.4 * DRAWS < flips < 0.6 * DRAWS


def test_random_erasing_probability_and_area() -> None:
    # A white image: normalised pixels are > 0, padding is < 0, erased pixels are exactly 0
    # (the ImageNet mean colour), so the zero count is the erased area.
    transform = train_transform(128, 64)
    image = uniform((255, 255, 255))
    torch.manual_seed(1)
    areas = []
    for _ in range(DRAWS):
        out = transform(image)
        zero = (out == 0).all(dim=0)
        assert torch.equal((out == 0).any(dim=0), zero)  # erasing covers every channel
        areas.append(int(zero.sum()) / (128 * 64))
    erased = [a for a in areas if a > 0]
    assert 0.4 * DRAWS < len(erased) < 0.6 * DRAWS
    # scale (0.02, 0.4); height and width are rounded separately, hence the margins
    assert min(erased) >= 0.9 * 0.02 and max(erased) <= 1.05 * 0.4
    assert min(erased) < 0.05 and max(erased) > 0.3  # the whole range is used
