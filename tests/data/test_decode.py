"""Every image mode a crop may come in is read as the 8-bit RGB its definition gives:
16-bit grayscale scaled by 1/257 (a true 16-bit PNG once read as all white), palette,
CMYK, grayscale, RGBA (alpha dropped), and .webp; each compared with a reference
conversion written here from the definition, not with Pillow's own."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unreid.data.datasets import load_dataset
from unreid.data.decode import to_rgb
from unreid.data.image_dataset import read_image

RNG = np.random.default_rng(0)
H, W = 16, 8


def rgb(path: Path) -> np.ndarray:
    return np.asarray(read_image(str(path)), dtype=np.int64)


def gray3(values: np.ndarray) -> np.ndarray:
    return np.repeat(values[..., None].astype(np.int64), 3, axis=-1)


def test_a_16_bit_png_is_scaled_not_clipped_to_white(tmp_path):
    values = RNG.integers(0, 65536, (H, W)).astype(np.uint16)
    values[0, :4] = [0, 128, 65535, 257 * 100 + 128]  # the ends and a rounding edge
    Image.fromarray(values).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")  # what Pillow opens it as
    want = gray3(np.floor(values.astype(np.float64) / 257 + 0.5))  # round(v / 257)
    got = rgb(tmp_path / "deep.png")
    assert np.array_equal(got, want)
    assert got.mean() < 200  # not the all-white image Pillow's convert gives


def test_palette_grayscale_rgba_and_cmyk_by_their_definitions(tmp_path):
    index = RNG.integers(0, 4, (H, W)).astype(np.uint8)
    palette = np.array([[10, 20, 30], [200, 0, 0], [0, 255, 0], [7, 8, 9]], np.uint8)
    p = Image.fromarray(index, "P")
    p.putpalette(palette.flatten().tolist())
    p.save(tmp_path / "palette.png")
    assert np.array_equal(rgb(tmp_path / "palette.png"), palette[index].astype(np.int64))

    gray = RNG.integers(0, 256, (H, W)).astype(np.uint8)
    Image.fromarray(gray, "L").save(tmp_path / "gray.png")
    assert np.array_equal(rgb(tmp_path / "gray.png"), gray3(gray))

    rgba = RNG.integers(0, 256, (H, W, 4)).astype(np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    assert np.array_equal(rgb(tmp_path / "alpha.png"), rgba[..., :3].astype(np.int64))

    cmyk = RNG.integers(0, 256, (H, W, 4)).astype(np.uint8)
    Image.fromarray(cmyk, "CMYK").save(tmp_path / "print.tif")  # lossless
    c, k = cmyk[..., :3].astype(np.float64), cmyk[..., 3:].astype(np.float64)
    want = np.floor((255 - c) * (255 - k) / 255 + 0.5)  # (1 - C)(1 - K), in 8 bits
    assert np.abs(rgb(tmp_path / "print.tif") - want).max() <= 1


def test_webp_crops_are_read_and_found_in_a_folder_dataset(tmp_path):
    pixels = RNG.integers(0, 256, (H, W, 3)).astype(np.uint8)
    for cam in ("cam1", "cam2"):
        (tmp_path / cam).mkdir()
        Image.fromarray(pixels).save(tmp_path / cam / "a.webp", lossless=True)
    assert np.array_equal(rgb(tmp_path / "cam1" / "a.webp"), pixels.astype(np.int64))
    found = load_dataset("folder", tmp_path).train
    assert sorted(Path(s.path).name for s in found) == ["a.webp", "a.webp"]


def test_integer_images_beyond_16_bits_are_refused_by_name():
    img = Image.fromarray(np.full((H, W), 70000, np.int32), "I")
    with pytest.raises(ValueError, match=r"crop\.tif: mode I holds values 70000\.\.70000"):
        to_rgb(img, "crop.tif")
