"""Pseudo labels: k-reciprocal Jaccard distance, then DBSCAN.

`cluster_features` is the single entry point the training engine calls each
epoch; the pieces are exported for tests, tools and alternative pipelines.
"""

from __future__ import annotations

import numbers
from typing import Literal

import numpy as np
import torch

from unreid.pseudo_labels.clustering import dbscan_labels
from unreid.pseudo_labels.jaccard import VARIANTS, Variant, jaccard_distance
from unreid.pseudo_labels.knn import KNN_METHODS, KnnMethod, knn_recall, knn_search
from unreid.pseudo_labels.labels import PseudoLabels
from unreid.pseudo_labels.sparse_jaccard import jaccard_from_neighbours, sparse_jaccard_distance

__all__ = [
    "JACCARD_IMPLS",
    "KNN_METHODS",
    "VARIANTS",
    "KnnMethod",
    "PseudoLabels",
    "Variant",
    "cluster_features",
    "dbscan_labels",
    "jaccard_distance",
    "jaccard_from_neighbours",
    "knn_recall",
    "knn_search",
    "sparse_jaccard_distance",
]

JACCARD_IMPLS: tuple[str, ...] = ("sparse", "dense")


def cluster_features(
    features: np.ndarray | torch.Tensor,
    *,
    k1: int = 30,
    k2: int = 6,
    eps: float = 0.6,
    min_samples: int = 4,
    jaccard_variant: Variant = "paper",
    knn: KnnMethod = "torch",
    jaccard_impl: Literal["sparse", "dense"] = "sparse",
    ivf_nlist: int | None = None,
    ivf_nprobe: int = 8,
) -> PseudoLabels:
    """Pseudo labels for (N, D) L2-normalised features: Jaccard distance, then DBSCAN.

    Features are not re-normalised here: un-normalised input is an upstream bug
    (the model should emit unit features), so the Jaccard code rejects it.

    The default sparse path keeps only pairs within eps (memory O(N * k) instead
    of N^2) and yields exactly the labels of the dense reference
    (``jaccard_impl="dense"``, which needs eps-independent N x N memory).

    Args:
        knn: neighbour search for the sparse path: ``"torch"`` (default: exact,
            on the features' device, the same products as the dense reference,
            so labels match it bit for bit), ``"exact"`` (faiss brute force on
            CPU; its inner products can differ in the last bit, so near-tied
            neighbours may swap: 1 label in 12,936 at Market size), ``"ivf"`` or
            ``"hnsw"`` (approximate, for very large N; check their recall with
            ``knn_recall``). The dense path has its own exact ranking and
            accepts the exact choices only.
        jaccard_impl: ``"sparse"`` (default) or ``"dense"`` (reference).
        ivf_nlist, ivf_nprobe: IVF cells (None = 4 sqrt(N)) and cells scanned
            per query, for ``knn="ivf"``.
    """
    if jaccard_impl not in JACCARD_IMPLS:
        raise ValueError(f"jaccard_impl must be one of {JACCARD_IMPLS}, found {jaccard_impl!r}")
    if knn not in KNN_METHODS:
        raise ValueError(f"knn must be one of {KNN_METHODS}, found {knn!r}")
    if jaccard_impl == "dense":
        if knn not in ("exact", "torch"):
            raise ValueError(f"the dense Jaccard path only supports knn='exact', found {knn!r}")
        dist = jaccard_distance(features, k1=k1, k2=k2, variant=jaccard_variant)
        return PseudoLabels(dbscan_labels(dist, eps=eps, min_samples=min_samples))
    if isinstance(eps, numbers.Real) and not isinstance(eps, bool) and eps >= 1:
        raise ValueError(
            f"eps must be < 1 for the sparse Jaccard path (every pair is within distance 1), "
            f"found {eps!r}; use jaccard_impl='dense'"
        )
    is_cuda = isinstance(features, torch.Tensor) and features.is_cuda
    method = "torch" if knn == "exact" and is_cuda else knn
    dbscan_labels(np.zeros((1, 1)), eps=eps, min_samples=min_samples)  # validate before work
    dist = sparse_jaccard_distance(
        features,
        k1=k1,
        k2=k2,
        variant=jaccard_variant,
        knn=method,
        max_distance=eps,
        ivf_nlist=ivf_nlist,
        ivf_nprobe=ivf_nprobe,
    )
    return PseudoLabels(dbscan_labels(dist, eps=eps, min_samples=min_samples))
