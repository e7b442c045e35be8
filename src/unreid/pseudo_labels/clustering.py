"""DBSCAN over a precomputed distance matrix.

DBSCAN suits pseudo-labelling because it needs no cluster count and leaves
ambiguous samples as outliers (-1) instead of forcing them into a cluster.
"""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.cluster import DBSCAN


def dbscan_labels(dist: np.ndarray, eps: float = 0.6, min_samples: int = 4) -> np.ndarray:
    """Cluster ids (int64, -1 = outlier) from a square, symmetric-in-spirit distance matrix.

    Args:
        dist: (N, N) non-negative finite distances, e.g. from ``jaccard_distance``.
        eps: neighbourhood radius, > 0.
        min_samples: core-point threshold (the point itself counts), >= 1.
    """
    d = np.asarray(dist)
    if d.ndim != 2 or d.shape[0] != d.shape[1]:
        raise ValueError(f"dist must be a square (N, N) matrix, found shape {d.shape}")
    if d.shape[0] == 0:
        raise ValueError("dist must be non-empty, found shape (0, 0)")
    if not np.issubdtype(d.dtype, np.number) or np.iscomplexobj(d):
        raise ValueError(f"dist must be a real numeric matrix, found dtype {d.dtype}")
    if not np.isfinite(d).all():
        raise ValueError("dist contains NaN or infinite values")
    if (d < 0).any():
        raise ValueError(f"dist must be non-negative, found minimum {d.min()}")
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not eps > 0:
        raise ValueError(f"eps must be a number > 0, found {eps!r}")
    if isinstance(min_samples, bool) or not isinstance(min_samples, numbers.Integral):
        raise ValueError(f"min_samples must be an integer >= 1, found {min_samples!r}")
    if min_samples < 1:
        raise ValueError(f"min_samples must be an integer >= 1, found {min_samples!r}")
    model = DBSCAN(eps=float(eps), min_samples=int(min_samples), metric="precomputed")
    return model.fit_predict(d).astype(np.int64)
