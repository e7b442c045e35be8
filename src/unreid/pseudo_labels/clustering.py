"""DBSCAN over a precomputed distance matrix.

DBSCAN suits pseudo-labelling because it needs no cluster count and leaves
ambiguous samples as outliers (-1) instead of forcing them into a cluster.
"""

from __future__ import annotations

import numbers

import numpy as np
import scipy.sparse as sp
from sklearn.cluster import DBSCAN


def _check_params(eps: float, min_samples: int) -> None:
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not eps > 0:
        raise ValueError(f"eps must be a number > 0, found {eps!r}")
    if isinstance(min_samples, bool) or not isinstance(min_samples, numbers.Integral):
        raise ValueError(f"min_samples must be an integer >= 1, found {min_samples!r}")
    if min_samples < 1:
        raise ValueError(f"min_samples must be an integer >= 1, found {min_samples!r}")


def _sparse_dbscan(dist: sp.spmatrix | sp.sparray, eps: float, min_samples: int) -> np.ndarray:
    """DBSCAN on a sparse distance graph whose missing entries mean distance 1.

    sklearn only considers stored entries as neighbours, which matches the dense
    result exactly when every missing pair is farther than eps; the sparse
    Jaccard matrix leaves out pairs at distance 1 (or above its max_distance),
    hence eps < 1 here.
    """
    if dist.ndim != 2 or dist.shape[0] != dist.shape[1]:
        raise ValueError(f"dist must be a square (N, N) matrix, found shape {dist.shape}")
    if dist.shape[0] == 0:
        raise ValueError("dist must be non-empty, found shape (0, 0)")
    _check_params(eps, min_samples)
    if not eps < 1:
        raise ValueError(
            f"eps must be < 1 for a sparse distance matrix (missing pairs mean distance 1), "
            f"found {eps!r}"
        )
    graph = dist.tocsr() if dist.format != "csr" else dist
    graph = sp.csr_matrix(graph)  # sklearn's neighbour code expects the matrix API
    data = graph.data
    if not np.issubdtype(data.dtype, np.number) or np.iscomplexobj(data):
        raise ValueError(f"dist must be a real numeric matrix, found dtype {data.dtype}")
    if not np.isfinite(data).all():
        raise ValueError("dist contains NaN or infinite values")
    if data.size and data.min() < 0:
        raise ValueError(f"dist must be non-negative, found minimum {data.min()}")
    model = DBSCAN(eps=float(eps), min_samples=int(min_samples), metric="precomputed")
    return model.fit_predict(graph).astype(np.int64)


def dbscan_labels(
    dist: np.ndarray | sp.spmatrix | sp.sparray, eps: float = 0.6, min_samples: int = 4
) -> np.ndarray:
    """Cluster ids (int64, -1 = outlier) from a square, symmetric-in-spirit distance matrix.

    Args:
        dist: (N, N) non-negative finite distances, e.g. from ``jaccard_distance``;
            or a scipy sparse matrix (e.g. from ``sparse_jaccard_distance``) whose
            missing entries mean distance 1 -- then eps must be < 1, and explicit
            zeros count as stored distances.
        eps: neighbourhood radius, > 0.
        min_samples: core-point threshold (the point itself counts), >= 1.
    """
    if sp.issparse(dist):
        return _sparse_dbscan(dist, eps, min_samples)
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
    _check_params(eps, min_samples)
    model = DBSCAN(eps=float(eps), min_samples=int(min_samples), metric="precomputed")
    return model.fit_predict(d).astype(np.int64)
