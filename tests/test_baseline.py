import numpy as np
import pytest
from PIL import Image

from unreid.baseline import histogram_features, image_histogram


def _save(tmp_path, name, arr):
    path = tmp_path / name
    Image.fromarray(arr.astype(np.uint8)).save(path)  # PNG: lossless, so colours stay exact
    return str(path)


def _solid(colour, h=32, w=16):
    return np.broadcast_to(np.array(colour, np.uint8), (h, w, 3)).copy()


def test_shape_dtype_and_unit_norm(tmp_path):
    rng = np.random.default_rng(0)
    paths = [_save(tmp_path, f"{i}.png", rng.integers(0, 256, (40, 20, 3))) for i in range(3)]
    for bins, stripes in [(8, 1), (4, 3)]:
        f = histogram_features(paths, bins=bins, stripes=stripes)
        assert f.shape == (3, stripes * bins**3) and f.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(f, axis=1), 1.0, rtol=1e-5)
        assert (f >= 0).all()


def test_same_colour_identical_other_colour_orthogonal(tmp_path):
    red1 = _save(tmp_path, "r1.png", _solid((200, 20, 20)))
    red2 = _save(tmp_path, "r2.png", _solid((200, 20, 20), h=50, w=30))
    blue = _save(tmp_path, "b.png", _solid((20, 20, 200)))
    f = histogram_features([red1, red2, blue])
    np.testing.assert_array_equal(f[0], f[1])
    assert f[0] @ f[1] == pytest.approx(1.0)
    assert f[0] @ f[2] == 0.0


def test_invariant_to_pixel_permutation():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (32, 16, 3), dtype=np.uint8)
    shuffled = rng.permutation(img.reshape(-1, 3)).reshape(img.shape)
    np.testing.assert_array_equal(image_histogram(img), image_histogram(shuffled))


def test_stripes_see_vertical_layout_whole_image_does_not():
    red, blue = _solid((200, 20, 20), h=16), _solid((20, 20, 200), h=16)
    red_over_blue = np.concatenate([red, blue])
    blue_over_red = np.concatenate([blue, red])
    np.testing.assert_array_equal(image_histogram(red_over_blue), image_histogram(blue_over_red))
    a, b = image_histogram(red_over_blue, stripes=2), image_histogram(blue_over_red, stripes=2)
    assert a @ b == 0.0


def test_rejects_bad_input():
    with pytest.raises(ValueError):
        image_histogram(np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError):
        image_histogram(np.zeros((8, 8, 3), np.uint8), stripes=9)
