"""The train and test transforms, checked against their definitions.

A coordinate image (red = column, green = row, blue = a marker) lets every train
draw be decoded back into what happened: whether it was flipped, where the
pad-10 random crop sat, and which rectangle was erased with what value. The
decoded draws are then checked against the recipe: flip 0.5, crop offsets
uniform on 0..20, erasing 0.5 with area 2-40 % and aspect 0.3-3.3.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import stats

from unreid.data.transforms import test_transform as eval_transform  # not a test
from unreid.data.transforms import train_transform

# ImageNet statistics written out, so a wrong constant in the module shows
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
MEAN_NP, STD_NP = MEAN.double().numpy(), STD.double().numpy()
H, W, PAD = 40, 24, 10
DRAWS = 400
MARK = 77  # blue of every image pixel; padding is 0 and either fill decodes to another blue


def uniform(colour: tuple[int, int, int], size: tuple[int, int] = (64, 128)) -> Image.Image:
    return Image.new("RGB", size, colour)


def coordinate_pixels() -> np.ndarray:
    """(3, H, W) uint8: pixel (y, x) is (20 + 9x, 20 + 5y, MARK)."""
    ys, xs = np.mgrid[0:H, 0:W]
    return np.stack([20 + 9 * xs, 20 + 5 * ys, np.full_like(xs, MARK)]).astype(np.uint8)


def coordinate_image() -> Image.Image:
    return Image.fromarray(coordinate_pixels().transpose(1, 2, 0))


def normalise(pixels: np.ndarray) -> np.ndarray:
    return (pixels / 255 - MEAN_NP) / STD_NP


def to_pixels(out: np.ndarray) -> np.ndarray:
    """Undo the normalisation, back to 0..255 units."""
    return (out * STD_NP + MEAN_NP) * 255


@dataclass
class Draw:
    flipped: bool
    top: int  # crop offset in the padded image, 0..2*PAD
    left: int
    erased: tuple[int, int, int, int] | None  # (y, x, h, w)
    fill: tuple[float, float, float] | None  # the erased pixels' value (normalised units)


def _padded(flipped: bool) -> np.ndarray:
    source = coordinate_pixels()
    padded = np.zeros((3, H + 2 * PAD, W + 2 * PAD))
    padded[:, PAD : PAD + H, PAD : PAD + W] = source[:, :, ::-1] if flipped else source
    return padded


# numpy rather than torch: on two busy cores torch's thread pool makes tiny ops ~1000x slower
PADDED = {flipped: _padded(flipped) for flipped in (False, True)}


def decode(out_tensor: torch.Tensor) -> Draw:
    """What one train draw did, asserting the output is exactly that and nothing else."""
    assert out_tensor.shape == (3, H, W) and out_tensor.dtype == torch.float32
    out = out_tensor.numpy().astype(np.float64)
    pixels = to_pixels(out)
    rounded = pixels.round()
    image_px = (rounded[2] == MARK) & (np.abs(pixels - rounded) < 1e-3).all(axis=0)
    ys, xs = np.nonzero(image_px)
    src_x, src_y = (rounded[0, ys, xs] - 20) / 9, (rounded[1, ys, xs] - 20) / 5
    tops = src_y - ys + PAD
    assert len(set(tops)) == 1, "rows are not one translation"
    lefts = {False: src_x - xs + PAD, True: (W - 1 - src_x) - xs + PAD}
    flips = [f for f, v in lefts.items() if len(set(v)) == 1]
    assert len(flips) == 1, "columns are neither a shift nor a flipped shift"
    flipped, top, left = flips[0], int(tops[0]), int(lefts[flips[0]][0])
    assert 0 <= top <= 2 * PAD and 0 <= left <= 2 * PAD
    # rebuild the draw from its definition and compare every pixel
    expected = normalise(PADDED[flipped][:, top : top + H, left : left + W])
    differs = ~np.isclose(out, expected, atol=1e-5).all(axis=0)
    if not differs.any():
        return Draw(flipped, top, left, None, None)
    rows, cols = np.nonzero(differs)
    y, x = int(rows.min()), int(cols.min())
    h, w = int(rows.max()) - y + 1, int(cols.max()) - x + 1
    assert int(differs.sum()) == h * w, "the changed pixels are not one rectangle"
    patch = out_tensor[:, y : y + h, x : x + w]
    fill = patch[:, 0, 0]
    assert torch.equal(patch, fill.view(3, 1, 1).expand_as(patch)), "erased pixels differ"
    return Draw(flipped, top, left, (y, x, h, w), tuple(fill.tolist()))


@pytest.fixture(scope="module")
def draws() -> dict[str, list[Draw]]:
    image = coordinate_image()
    out = {}
    for fill in ("zero", "reference"):
        transform = train_transform(H, W, erasing_fill=fill)
        torch.manual_seed(0)
        out[fill] = [decode(transform(image)) for _ in range(DRAWS)]
    return out


def binomial_bounds(n: int, p: float) -> tuple[float, float]:
    return stats.binom.interval(1 - 1e-6, n, p)


@pytest.mark.parametrize("fill", ["zero", "reference"])
@pytest.mark.parametrize("source_size", [(30, 90), (64, 128), (200, 100)])
def test_train_output_is_three_channels_at_the_requested_size(fill, source_size) -> None:
    torch.manual_seed(0)
    out = train_transform(128, 64, erasing_fill=fill)(uniform((10, 200, 30), source_size))
    assert out.shape == (3, 128, 64) and out.dtype == torch.float32


@pytest.mark.parametrize("source_size", [(30, 90), (64, 128), (200, 100)])
def test_test_transform_resizes_to_the_requested_size(source_size) -> None:
    out = eval_transform(128, 64)(uniform((10, 200, 30), source_size))
    assert out.shape == (3, 128, 64) and out.dtype == torch.float32


def test_test_transform_normalises_every_pixel_with_the_imagenet_statistics() -> None:
    image = coordinate_image()  # already H x W: the resize leaves it as it is
    out = eval_transform(H, W)(image).numpy()
    assert np.allclose(out, normalise(coordinate_pixels()), atol=1e-6)
    white = eval_transform(32, 16)(uniform((255, 255, 255)))
    assert torch.allclose(white, ((1 - MEAN) / STD).expand_as(white), atol=1e-5)


def test_test_transform_is_deterministic() -> None:
    image = coordinate_image()
    torch.manual_seed(0)
    first = eval_transform(H, W)(image)
    torch.manual_seed(1)
    assert torch.equal(first, eval_transform(H, W)(image))


def test_every_train_draw_is_a_flip_a_pad_crop_and_at_most_one_erasure(draws) -> None:
    # decode() asserts that each of the 2 x DRAWS outputs is exactly its decoded draw
    assert all(len(d) == DRAWS for d in draws.values())


def test_flip_rate_is_one_half(draws) -> None:
    flips = sum(d.flipped for d in draws["zero"])
    low, high = binomial_bounds(DRAWS, 0.5)
    assert low <= flips <= high


def test_crop_offsets_are_uniform_over_the_padding(draws) -> None:
    for offsets in ([d.top for d in draws["zero"]], [d.left for d in draws["zero"]]):
        counts = torch.bincount(torch.tensor(offsets), minlength=2 * PAD + 1)
        assert len(counts) == 2 * PAD + 1 and bool((counts > 0).all())
        assert stats.chisquare(counts.numpy()).pvalue > 1e-4
    # the two offsets are drawn independently: all (top, left) pairs are not on a line
    assert len({(d.top, d.left) for d in draws["zero"]}) > 3 * (2 * PAD + 1)


def test_erasing_probability_is_one_half(draws) -> None:
    low, high = binomial_bounds(DRAWS, 0.5)
    for fill in draws:
        erased = sum(d.erased is not None for d in draws[fill])
        assert low <= erased <= high


def test_erased_rectangles_respect_area_and_aspect_bounds(draws) -> None:
    # h and w are each rounded from real values, so each may be off by 0.5: the
    # bounds hold for some (h', w') with |h' - h| <= 0.5 and |w' - w| <= 0.5
    area = H * W
    shapes = [d.erased[2:] for ds in draws.values() for d in ds if d.erased is not None]
    for h, w in shapes:
        assert h < H and w < W
        assert (h - 0.5) * (w - 0.5) <= 0.4 * area and (h + 0.5) * (w + 0.5) >= 0.02 * area
        assert (h - 0.5) / (w + 0.5) <= 3.3 and (h + 0.5) / (w - 0.5) >= 0.3
    fractions = [h * w / area for h, w in shapes]
    aspects = [h / w for h, w in shapes]
    assert min(fractions) < 0.05 and max(fractions) > 0.3  # the whole range is drawn
    assert min(aspects) < 0.5 and max(aspects) > 2.0


def test_erased_rectangles_are_placed_all_over_the_image(draws) -> None:
    erased = [d.erased for d in draws["zero"] if d.erased is not None]
    assert min(y for y, _, _, _ in erased) == 0 and min(x for _, x, _, _ in erased) == 0
    assert max(y + h for y, _, h, _ in erased) == H and max(x + w for _, x, _, w in erased) == W


def test_zero_fill_erases_to_the_mean_colour(draws) -> None:
    fills = [d.fill for d in draws["zero"] if d.fill is not None]
    assert fills and all(f == (0.0, 0.0, 0.0) for f in fills)
    assert np.allclose(to_pixels(np.zeros((3, 1, 1))), MEAN_NP * 255)


def test_reference_fill_writes_the_imagenet_mean_into_the_normalised_tensor(draws) -> None:
    # Cluster Contrast's RandomErasing(mean=[0.485, 0.456, 0.406]) after Normalize
    reference = torch.tensor([0.485, 0.456, 0.406])  # float32, as the tensor holds them
    fills = [d.fill for d in draws["reference"] if d.fill is not None]
    assert fills and all(f == tuple(reference.tolist()) for f in fills)
    # which, in pixel terms, is not the mean colour but a lighter grey
    pixel = to_pixels(reference.double().numpy().reshape(3, 1, 1)) / 255
    assert (pixel > MEAN_NP + 0.09).all()


def test_fills_change_only_the_erased_value(draws) -> None:
    # same seed, same draws: flips, crops and rectangles agree, only the value differs
    for zero, ref in zip(draws["zero"], draws["reference"], strict=True):
        assert (zero.flipped, zero.top, zero.left, zero.erased) == (
            ref.flipped,
            ref.top,
            ref.left,
            ref.erased,
        )


def test_default_fill_is_zero() -> None:
    image = coordinate_image()
    torch.manual_seed(3)
    default = [train_transform(H, W)(image) for _ in range(20)]
    torch.manual_seed(3)
    zero = [train_transform(H, W, erasing_fill="zero")(image) for _ in range(20)]
    assert all(torch.equal(a, b) for a, b in zip(default, zero, strict=True))


def test_unknown_fill_names_the_allowed_values() -> None:
    with pytest.raises(
        ValueError, match=r"erasing_fill must be one of zero, reference, found 'mean'"
    ):
        train_transform(H, W, erasing_fill="mean")
