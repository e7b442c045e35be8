"""The unit-norm check every cosine-based neighbourhood relies on.

The distance 2 - 2<x, y> only equals the squared Euclidean distance for unit
vectors, so un-normalised input would silently change every neighbourhood;
each entry point that assumes unit rows checks them here, with one tolerance.
"""

from __future__ import annotations

import numpy as np
import torch

UNIT_NORM_TOL = 1e-3  # how far a row's L2 norm may stray from 1


def as_unit_features(features: np.ndarray | torch.Tensor, name: str = "features") -> np.ndarray:
    """Validate (N, D) L2-normalised features and return them as C-contiguous float32.

    Raises ValueError for non-numeric, non-2-D, empty or non-finite input and for
    any row whose norm differs from 1 by more than `UNIT_NORM_TOL`.
    """
    if isinstance(features, torch.Tensor):
        arr = features.detach().cpu()
        if arr.is_complex() or arr.dtype == torch.bool:
            raise ValueError(f"{name} must be a real numeric tensor, found dtype {arr.dtype}")
        arr = arr.to(torch.float32).numpy()
    else:
        arr = np.asarray(features)
        if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
            raise ValueError(f"{name} must be a real numeric array, found dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N, D), found shape {tuple(arr.shape)}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} must be non-empty, found shape {tuple(arr.shape)}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    # float32 squared norms (rounding ~1e-7 * sqrt(D), far inside the tolerance) in
    # one pass; NaN / inf anywhere in a row shows up in its sum
    sq = np.einsum("ij,ij->i", arr, arr)
    if not np.isfinite(sq).all() and not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    norms = np.sqrt(sq.astype(np.float64))
    worst = int(np.argmax(np.abs(norms - 1.0)))
    if abs(norms[worst] - 1.0) > UNIT_NORM_TOL:
        raise ValueError(
            f"{name} rows must be L2-normalised (norm 1 within {UNIT_NORM_TOL}), "
            f"found norm {norms[worst]:.6f} at row {worst}"
        )
    return arr
