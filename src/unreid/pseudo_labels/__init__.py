"""Pseudo labels: k-reciprocal Jaccard distance, then DBSCAN.

`cluster_features` is the single entry point the training engine calls each
epoch; the pieces are exported for tests, tools and alternative pipelines.
"""

from __future__ import annotations

import numpy as np
import torch

from unreid.pseudo_labels.clustering import dbscan_labels
from unreid.pseudo_labels.jaccard import VARIANTS, Variant, jaccard_distance
from unreid.pseudo_labels.labels import PseudoLabels

__all__ = [
    "VARIANTS",
    "PseudoLabels",
    "Variant",
    "cluster_features",
    "dbscan_labels",
    "jaccard_distance",
]


def cluster_features(
    features: np.ndarray | torch.Tensor,
    *,
    k1: int = 30,
    k2: int = 6,
    eps: float = 0.6,
    min_samples: int = 4,
    jaccard_variant: Variant = "paper",
) -> PseudoLabels:
    """Pseudo labels for (N, D) L2-normalised features: Jaccard distance, then DBSCAN.

    Features are not re-normalised here: un-normalised input is an upstream bug
    (the model should emit unit features), so ``jaccard_distance`` rejects it.
    """
    dist = jaccard_distance(features, k1=k1, k2=k2, variant=jaccard_variant)
    return PseudoLabels(dbscan_labels(dist, eps=eps, min_samples=min_samples))
