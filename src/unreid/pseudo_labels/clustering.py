"""Pseudo labels by DBSCAN on the k-reciprocal Jaccard distance (Cluster Contrast's recipe).

DBSCAN suits pseudo-labelling because it needs no cluster count and leaves
ambiguous samples as outliers (-1) instead of forcing them into a cluster.
`cluster_features` is the whole path from features to labels; `dbscan_labels`
is the clustering step on any precomputed distance matrix.
"""

from __future__ import annotations

import numbers
from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.cluster import DBSCAN

from unreid.pseudo_labels.jaccard import Variant, jaccard_distance
from unreid.pseudo_labels.knn import KNN_METHODS, KnnMethod
from unreid.pseudo_labels.labels import PseudoLabels
from unreid.pseudo_labels.sparse_jaccard import sparse_jaccard_distance

JACCARD_IMPLS: tuple[str, ...] = ("sparse", "dense")


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


def sparse_radius(radii: list[float], min_samples: int, hint: str = "") -> float:
    """Every radius checked before any work; the largest, which the sparse graph is cut at.

    The sparse Jaccard path keeps only pairs closer than that radius, so it must be < 1
    (every pair lies within distance 1); `hint` says what to use instead.
    """
    for r in radii:
        dbscan_labels(np.zeros((1, 1)), eps=r, min_samples=min_samples)
    eps = max(radii)
    if isinstance(eps, numbers.Real) and not isinstance(eps, bool) and eps >= 1:
        raise ValueError(
            f"eps must be < 1 for the sparse Jaccard path (every pair is within distance 1), "
            f"found {eps!r}{hint}"
        )
    return eps


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


def cluster_features(
    features: np.ndarray | torch.Tensor,
    *,
    k1: int = 30,
    k2: int = 6,
    eps: float = 0.6,
    min_samples: int = 4,
    jaccard_variant: Variant = "paper",
    knn: KnnMethod = "auto",
    jaccard_impl: Literal["sparse", "dense"] = "sparse",
    ivf_nlist: int | None = None,
    ivf_nprobe: int | None = None,
    knn_refine: int | None = None,
) -> PseudoLabels:
    """Pseudo labels for (N, D) L2-normalised features: Jaccard distance, then DBSCAN.

    `cluster_features_at` is the same at several radii on one distance computation.
    """
    (labels,) = cluster_features_at(
        features, [eps], k1=k1, k2=k2, min_samples=min_samples, jaccard_variant=jaccard_variant,
        knn=knn, jaccard_impl=jaccard_impl, ivf_nlist=ivf_nlist, ivf_nprobe=ivf_nprobe,
        knn_refine=knn_refine,
    )  # fmt: skip
    return labels


def cluster_features_at(
    features: np.ndarray | torch.Tensor,
    radii: list[float],
    *,
    k1: int = 30,
    k2: int = 6,
    min_samples: int = 4,
    jaccard_variant: Variant = "paper",
    knn: KnnMethod = "auto",
    jaccard_impl: Literal["sparse", "dense"] = "sparse",
    ivf_nlist: int | None = None,
    ivf_nprobe: int | None = None,
    knn_refine: int | None = None,
) -> list[PseudoLabels]:
    """DBSCAN labels at each radius in `radii`, from one Jaccard distance (SpCL's criterion).

    The sparse distance keeps the pairs within the largest radius, which holds
    every pair a smaller radius needs, so each labelling equals its own run.

    Features are not re-normalised here: un-normalised input is an upstream bug
    (the model should emit unit features), so the Jaccard code rejects it.

    The default sparse path keeps only pairs within eps (memory O(N * k) instead
    of N^2) and yields exactly the labels of the dense reference
    (``jaccard_impl="dense"``, which needs eps-independent N x N memory).

    Args:
        knn: neighbour search for the sparse path: ``"auto"`` (default:
            ``"torch"`` below ``knn.AUTO_EXACT_BELOW`` rows or on CUDA, else
            ``"ivf_whitened"``), ``"torch"`` (exact, on the features' device, the
            same products as the dense reference, so labels match it bit for
            bit), ``"exact"`` (faiss brute force on
            CPU; its inner products can differ in the last bit, so near-tied
            neighbours may swap: 1 label in 12,936 at Market size), ``"ivf"``,
            ``"hnsw"`` or ``"ivf_whitened"`` (approximate, for very large N; check
            their recall with ``knn_recall``), ``"torch_bf16"`` / ``"torch_tf32"`` / ``"torch_fp32"``
            (exact lists from low-precision products re-ranked in float64, any
            device; see ``device_knn.py``). The dense path has its own exact
            ranking and accepts ``"auto"``, ``"exact"`` and ``"torch"`` only.
        jaccard_impl: ``"sparse"`` (default) or ``"dense"`` (reference).
        ivf_nlist, ivf_nprobe: IVF cells (None = 4 sqrt(N)) and cells scanned
            per query (None = the backend's default), for the IVF backends.
        knn_refine: neighbours-of-neighbours rounds on the approximate backends'
            lists (None = ``knn.REFINE``, 0 = none; ``nn_refine.py``).
    """
    if jaccard_impl not in JACCARD_IMPLS:
        raise ValueError(f"jaccard_impl must be one of {JACCARD_IMPLS}, found {jaccard_impl!r}")
    if knn not in KNN_METHODS:
        raise ValueError(f"knn must be one of {KNN_METHODS}, found {knn!r}")
    if not radii:
        raise ValueError("radii must hold at least one eps, found none")
    if jaccard_impl == "dense":
        if knn not in ("auto", "exact", "torch"):
            raise ValueError(
                "the dense Jaccard path only supports knn='exact' or 'torch' (or 'auto', exact "
                f"there), found {knn!r}"
            )
        dist = jaccard_distance(features, k1=k1, k2=k2, variant=jaccard_variant)
        return [PseudoLabels(dbscan_labels(dist, eps=r, min_samples=min_samples)) for r in radii]
    eps = sparse_radius(radii, min_samples, "; use jaccard_impl='dense'")
    is_cuda = isinstance(features, torch.Tensor) and features.is_cuda
    method = "torch" if knn == "exact" and is_cuda else knn
    dist = sparse_jaccard_distance(
        features,
        k1=k1,
        k2=k2,
        variant=jaccard_variant,
        knn=method,
        max_distance=eps,
        ivf_nlist=ivf_nlist,
        ivf_nprobe=ivf_nprobe,
        knn_refine=knn_refine,
    )
    return [PseudoLabels(dbscan_labels(dist, eps=r, min_samples=min_samples)) for r in radii]
