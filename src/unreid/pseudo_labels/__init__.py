"""Pseudo labels: each epoch's cluster ids for the unlabelled training images.

`make_pseudo_labels` (with the `CLUSTERERS` registry) is the entry point the
training engine calls each epoch; `cluster_features` is the default
k-reciprocal Jaccard + DBSCAN path, and the pieces are exported for tests,
tools and alternative pipelines.
"""

from __future__ import annotations

from unreid.pseudo_labels.clusterers import CLUSTERERS, list_clusterers, make_pseudo_labels
from unreid.pseudo_labels.clustering import JACCARD_IMPLS, cluster_features, dbscan_labels
from unreid.pseudo_labels.jaccard import VARIANTS, Variant, jaccard_distance
from unreid.pseudo_labels.knn import KNN_METHODS, KnnMethod, knn_recall, knn_search
from unreid.pseudo_labels.labels import PseudoLabels
from unreid.pseudo_labels.sparse_jaccard import jaccard_from_neighbours, sparse_jaccard_distance

__all__ = [
    "CLUSTERERS",
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
    "list_clusterers",
    "make_pseudo_labels",
    "sparse_jaccard_distance",
]
