"""The non-learned reference: a colour histogram per image, compared by cosine.

It answers "how far does colour alone get?" on a dataset, which is the floor a
learned model must clear to show that it learned anything beyond colour.

Colour space: joint RGB, `bins` levels per channel (bins**3 cells). RGB is the
plain choice with no built-in invariance, and on the synthetic set it scored
higher than an 8×8×8 HSV histogram (15% vs 6% mAP), so it is the fairer floor.
Each stripe's histogram is L1-normalised and square-rooted (Hellinger kernel:
the dot product of two such vectors is the Bhattacharyya coefficient), and the
concatenation is L2-normalised so cosine similarity is a plain dot product.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from unreid.data.decode import to_rgb

__all__ = ["histogram_features", "image_histogram"]


def image_histogram(rgb: np.ndarray, bins: int = 8, stripes: int = 1) -> np.ndarray:
    """Hellinger-normalised joint RGB histogram of one (H, W, 3) uint8 image, per stripe."""
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {rgb.shape}")
    if not 1 <= bins <= 256 or stripes < 1 or stripes > rgb.shape[0]:
        raise ValueError(
            f"bad bins={bins} / stripes={stripes} for an image of height {rgb.shape[0]}"
        )
    q = (rgb.astype(np.int64) * bins) >> 8
    code = (q[..., 0] * bins + q[..., 1]) * bins + q[..., 2]
    cells = bins**3
    h = rgb.shape[0]
    stripe = np.arange(h) * stripes // h
    code = code + (stripe * cells)[:, None]
    hist = np.bincount(code.ravel(), minlength=stripes * cells).reshape(stripes, cells)
    hist = hist.astype(np.float64)
    hist /= np.maximum(hist.sum(axis=1, keepdims=True), 1.0)
    feat = np.sqrt(hist).ravel()
    return (feat / max(np.linalg.norm(feat), 1e-12)).astype(np.float32)


def histogram_features(paths: Sequence[str], bins: int = 8, stripes: int = 1) -> np.ndarray:
    """(N, stripes * bins**3) float32 features with unit-norm rows, one per image path.

    `stripes` splits the image into equal horizontal bands (head-to-feet order)
    with a histogram each; the default 1 is the whole-image histogram.
    """
    feats = np.zeros((len(paths), stripes * bins**3), dtype=np.float32)
    for i, path in enumerate(paths):
        with Image.open(path) as im:
            feats[i] = image_histogram(np.asarray(to_rgb(im, str(path))), bins, stripes)
    return feats
