"""Batched on-device augmentation: the per-image train transform's draws, for a whole batch.

Two checks. Draw by draw: replaying a batch's drawn parameters through
torchvision's own per-image functions gives the batched output exactly. In
distribution: a coordinate image (red = column, green = row, blue = a marker)
is decoded back into what each draw did, for the batched pipeline and for
`train_transform`, and flip rate, crop offsets, erasing rate, area, aspect and
placement are compared between the two and against the recipe.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as F
from PIL import Image
from scipy import stats

from unreid.data.device_augment import DeviceAugment
from unreid.data.transforms import train_transform

MEAN = np.array([0.485, 0.456, 0.406]).reshape(3, 1, 1)
STD = np.array([0.229, 0.224, 0.225]).reshape(3, 1, 1)
H, W, PAD, DRAWS, MARK = 40, 24, 10, 1000, 77
P = 1e-4  # significance of every distribution check (fixed seeds: no flakiness)


def coordinate_pixels() -> np.ndarray:
    ys, xs = np.mgrid[0:H, 0:W]
    return np.stack([20 + 9 * xs, 20 + 5 * ys, np.full_like(xs, MARK)]).astype(np.uint8)


def replay(image: torch.Tensor, aug: DeviceAugment, p, k: int) -> torch.Tensor:
    """Draw `k` of `p` through torchvision's per-image functional ops."""
    pil = F.to_pil_image(image)
    if p.flip[k]:
        pil = F.hflip(pil)
    pil = F.crop(F.pad(pil, PAD), int(p.top[k]), int(p.left[k]), H, W)
    out = F.normalize(F.to_tensor(pil), list(MEAN.ravel()), list(STD.ravel()))
    if p.erase[k]:
        value = torch.tensor([0.485, 0.456, 0.406] if aug.erasing_fill == "reference" else [0.0])
        i, j = int(p.erase_top[k]), int(p.erase_left[k])
        h, w = int(p.erase_height[k]), int(p.erase_width[k])
        out = F.erase(out, i, j, h, w, value.view(-1, 1, 1))
    return out


@pytest.mark.parametrize("fill", ["zero", "reference"])
def test_batched_output_is_each_draw_replayed_by_torchvision_exactly(fill):
    aug = DeviceAugment(H, W, erasing_fill=fill)
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (64, 3, H, W), dtype=torch.uint8, generator=gen)
    params = aug.draw(64, torch.Generator().manual_seed(1), images.device)
    out = aug.apply(images, params)
    assert out.dtype == torch.float32 and out.shape == (64, 3, H, W) and out.is_contiguous()
    assert 0 < int(params.erase.sum()) < 64 and 0 < int(params.flip.sum()) < 64
    for k in range(64):
        assert torch.equal(out[k], replay(images[k], aug, params, k)), k
    nhwc = aug.apply(images, params, channels_last=True)
    assert nhwc.is_contiguous(memory_format=torch.channels_last) and torch.equal(nhwc, out)


def test_same_seed_same_batch_and_bad_input_is_refused():
    aug = DeviceAugment(H, W)
    images = torch.from_numpy(coordinate_pixels()).expand(8, 3, H, W).contiguous()
    a = aug(images, torch.Generator().manual_seed(5))
    b = aug(images, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and not torch.equal(a, aug(images, torch.Generator().manual_seed(6)))
    with pytest.raises(ValueError, match=r"uint8 \(B, 3, 40, 24\) batch, found torch.float32"):
        aug(images.float(), torch.Generator())
    with pytest.raises(ValueError, match=r"found torch.uint8 \(8, 3, 24, 40\)"):
        aug(images.transpose(2, 3), torch.Generator())
    with pytest.raises(ValueError, match="generator is on cpu, the batch on meta"):
        aug.draw(2, torch.Generator(), torch.device("meta"))
    with pytest.raises(ValueError, match="erasing_fill must be one of zero, reference"):
        DeviceAugment(H, W, erasing_fill="mean")


def decode(out: np.ndarray) -> tuple[bool, int, int, tuple[int, int, int, int] | None]:
    """(flipped, top, left, erased (y, x, h, w) or None) of one coordinate-image draw."""
    pixels = (out * STD + MEAN) * 255
    rounded = pixels.round()
    image_px = (rounded[2] == MARK) & (np.abs(pixels - rounded) < 1e-3).all(axis=0)
    ys, xs = np.nonzero(image_px)
    src_x, src_y = (rounded[0, ys, xs] - 20) / 9, (rounded[1, ys, xs] - 20) / 5
    tops = np.unique(src_y - ys + PAD)
    plain, flipped = np.unique(src_x - xs + PAD), np.unique(W - 1 - src_x - xs + PAD)
    assert len(tops) == 1 and (len(plain) == 1) != (len(flipped) == 1)
    flip = len(flipped) == 1
    top, left = int(tops[0]), int((flipped if flip else plain)[0])
    padded = np.zeros((3, H + 2 * PAD, W + 2 * PAD))
    source = coordinate_pixels()
    padded[:, PAD : PAD + H, PAD : PAD + W] = source[:, :, ::-1] if flip else source
    expected = (padded[:, top : top + H, left : left + W] / 255 - MEAN) / STD
    differs = ~np.isclose(out, expected, atol=1e-5).all(axis=0)
    if not differs.any():
        return flip, top, left, None
    rows, cols = np.nonzero(differs)
    y, x, h, w = rows.min(), cols.min(), rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
    assert differs.sum() == h * w and np.allclose(out[:, differs], 0.0)  # one zero rectangle
    return flip, top, left, (int(y), int(x), int(h), int(w))


@pytest.fixture(scope="module")
def draws() -> dict[str, list]:
    pixels = coordinate_pixels()
    batched = DeviceAugment(H, W)(
        torch.from_numpy(pixels).expand(DRAWS, 3, H, W).contiguous(),
        torch.Generator().manual_seed(0),
    )
    image, transform = Image.fromarray(pixels.transpose(1, 2, 0)), train_transform(H, W)
    torch.manual_seed(0)
    per_image = [transform(image) for _ in range(DRAWS)]
    return {
        "batched": [decode(o) for o in batched.double().numpy()],
        "per_image": [decode(o.double().numpy()) for o in per_image],
    }


def same_distribution(a: list, b: list, support: list) -> float:
    """p-value of a chi-square test that two samples of a discrete variable agree."""
    table = np.array([[sum(v == s for v in x) for s in support] for x in (a, b)])
    table = table[:, table.sum(0) > 0]
    return stats.chi2_contingency(table).pvalue


def test_flip_rate_matches_the_per_image_pipeline(draws):
    low, high = stats.binom.interval(1 - 1e-6, DRAWS, 0.5)
    flips = {k: [d[0] for d in v] for k, v in draws.items()}
    assert all(low <= sum(f) <= high for f in flips.values())
    assert same_distribution(flips["batched"], flips["per_image"], [False, True]) > P


def test_crop_offsets_are_uniform_over_0_to_20_like_the_per_image_pipeline(draws):
    support = list(range(2 * PAD + 1))
    for axis in (1, 2):
        batched = [d[axis] for d in draws["batched"]]
        counts = np.bincount(batched, minlength=len(support))
        assert len(counts) == len(support) and (counts > 0).all()
        assert stats.chisquare(counts).pvalue > P
        per_image = [d[axis] for d in draws["per_image"]]
        assert same_distribution(batched, per_image, support) > P
    pairs = {(d[1], d[2]) for d in draws["batched"]}  # independent axes
    assert len(pairs) > 300


def test_erasing_rate_area_aspect_and_place_match_the_per_image_pipeline(draws):
    erased = {k: [d[3] for d in v if d[3] is not None] for k, v in draws.items()}
    low, high = stats.binom.interval(1 - 1e-6, DRAWS, 0.5)
    assert all(low <= len(e) <= high for e in erased.values())
    rate = [[len(e), DRAWS - len(e)] for e in erased.values()]
    assert stats.chi2_contingency(rate).pvalue > P
    area = H * W
    for _y, _x, h, w in erased["batched"]:  # rounding moves h and w by up to 0.5 each
        assert h < H and w < W
        assert (h - 0.5) * (w - 0.5) <= 0.4 * area and (h + 0.5) * (w + 0.5) >= 0.02 * area
        assert (h - 0.5) / (w + 0.5) <= 3.3 and (h + 0.5) / (w - 0.5) >= 0.3

    def features(boxes):
        return (
            [h * w / area for _, _, h, w in boxes],
            [np.log(h / w) for _, _, h, w in boxes],
            [y / (H - h) for y, _, h, _ in boxes],  # place along the free range
            [x / (W - w) for _, x, _, w in boxes],
        )

    for a, b in zip(features(erased["batched"]), features(erased["per_image"]), strict=True):
        assert stats.ks_2samp(a, b).pvalue > P
    fractions = features(erased["batched"])[0]
    assert min(fractions) < 0.05 and max(fractions) > 0.3  # the whole range is drawn


def test_many_draws_hit_the_recipe_rates_tightly():
    """Parameters alone, 200,000 draws: rates within about 1 % of the recipe's."""
    n = 200_000
    p = DeviceAugment(H, W).draw(n, torch.Generator().manual_seed(7), torch.device("cpu"))
    low, high = stats.binom.interval(1 - 1e-6, n, 0.5)
    assert low <= int(p.flip.sum()) <= high
    assert low <= int(p.erase.sum()) <= high  # some try fits almost surely at this size
    for offsets in (p.top, p.left):
        counts = torch.bincount(offsets, minlength=2 * PAD + 1).numpy()
        assert len(counts) == 2 * PAD + 1 and stats.chisquare(counts).pvalue > P
    h, w = p.erase_height[p.erase].double(), p.erase_width[p.erase].double()
    y, x = p.erase_top[p.erase].double(), p.erase_left[p.erase].double()
    assert bool((y + h <= H).all()) and bool((x + w <= W).all())
    # placed uniformly on 0..H-h (0..W-w): the relative place averages 1/2
    assert abs(float((y / (H - h)).mean()) - 0.5) < 0.005
    assert abs(float((x / (W - w)).mean()) - 0.5) < 0.005
