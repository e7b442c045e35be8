"""Named ways to turn one epoch's features into pseudo labels (``cluster.method``).

The engine asks for labels by name; every clusterer takes the same arguments
(features, the `ClusterConfig`, the run's seed, the true identities when the
training set has them) and reads only the config keys it needs, so a new
clusterer is one registered function and no change to the training loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np
import torch

from unreid.distributed import DistContext
from unreid.pseudo_labels.clustering import cluster_features_at
from unreid.pseudo_labels.infomap_clustering import infomap_labels
from unreid.pseudo_labels.labels import PseudoLabels
from unreid.pseudo_labels.sharded import sharded_cluster_features_at
from unreid.registry import Registry, make_lister
from unreid.settings import ClusterConfig


class Clusterer(Protocol):
    def __call__(
        self,
        features: torch.Tensor,
        cfg: ClusterConfig,
        *,
        seed: int,
        true_ids: Sequence[int | None] | None,
    ) -> PseudoLabels: ...


CLUSTERERS: Registry[Clusterer] = Registry("clusterer")
list_clusterers: Callable[[], list[str]] = make_lister(CLUSTERERS)


def make_pseudo_labels(
    method: str,
    features: torch.Tensor,
    cfg: ClusterConfig,
    *,
    seed: int,
    true_ids: Sequence[int | None] | None,
) -> PseudoLabels:
    """Pseudo labels from the clusterer registered as ``method``.

    An unknown ``method`` raises `unreid.registry.UnknownNameError` listing the
    registered names.
    """
    return CLUSTERERS.get(method)(features, cfg, seed=seed, true_ids=true_ids)


@CLUSTERERS.register("dbscan")
def dbscan_clusterer(
    features: torch.Tensor,
    cfg: ClusterConfig,
    *,
    seed: int,
    true_ids: Sequence[int | None] | None,
) -> PseudoLabels:
    """k-reciprocal Jaccard distance, then DBSCAN (Cluster Contrast); deterministic."""
    return dbscan_at_radii(features, cfg, [cfg.eps])[0]


def dbscan_at_radii(
    features: torch.Tensor, cfg: ClusterConfig, radii: list[float]
) -> list[PseudoLabels]:
    """The dbscan clusterer's labels at each radius (instead of `cfg.eps`), one distance."""
    return cluster_features_at(
        features,
        radii,
        k1=cfg.k1,
        k2=cfg.k2,
        min_samples=cfg.min_samples,
        jaccard_variant=cfg.jaccard_variant,
        knn=cfg.knn,
        jaccard_impl=cfg.jaccard_impl,
        ivf_nlist=cfg.ivf_nlist or None,  # 0 in the config means "4 sqrt(N)"
        ivf_nprobe=cfg.ivf_nprobe or None,
        knn_refine=cfg.knn_refine,
    )


def shards(method: str, cfg: ClusterConfig, ctx: DistContext) -> bool:
    """Whether this epoch's clustering is split over the ranks (every rank must join)."""
    return ctx.distributed and cfg.shard and method == "dbscan" and cfg.jaccard_impl == "sparse"


def sharded_dbscan(
    features: torch.Tensor, cfg: ClusterConfig, ctx: DistContext
) -> PseudoLabels | None:
    """The dbscan clusterer with its kNN and Jaccard rows split over ``ctx``'s ranks.

    Called by every rank; rank 0 gets the labels (the same as one process's with
    an exact, shard-independent kNN backend), the others None.
    """
    out = sharded_cluster_features_at(
        features, [cfg.eps], ctx, k1=cfg.k1, k2=cfg.k2, min_samples=cfg.min_samples,
        jaccard_variant=cfg.jaccard_variant, knn=cfg.knn,
        ivf_nlist=cfg.ivf_nlist or None, ivf_nprobe=cfg.ivf_nprobe or None,
        knn_refine=cfg.knn_refine,
    )  # fmt: skip
    return None if out is None else out[0]


@CLUSTERERS.register("infomap")
def infomap_clusterer(
    features: torch.Tensor,
    cfg: ClusterConfig,
    *,
    seed: int,
    true_ids: Sequence[int | None] | None,
) -> PseudoLabels:
    """InfoMap communities of a thresholded kNN graph; seeded by the run's seed."""
    return PseudoLabels(
        infomap_labels(
            features,
            k=cfg.infomap_k,
            min_sim=cfg.infomap_min_sim,
            min_cluster_size=cfg.infomap_min_size,
            seed=seed,
        )
    )


@CLUSTERERS.register("ground_truth")
def ground_truth_clusterer(
    features: torch.Tensor,
    cfg: ClusterConfig,
    *,
    seed: int,
    true_ids: Sequence[int | None] | None,
) -> PseudoLabels:
    """The true identities as clusters: the upper bound any clusterer is measured against."""
    if true_ids is None or any(pid is None for pid in true_ids):
        raise ValueError(
            "train.ground_truth=true / cluster.method=ground_truth needs identity labels "
            "on the training set"
        )
    _, ids = np.unique(list(true_ids), return_inverse=True)
    return PseudoLabels(ids.astype(np.int64))
