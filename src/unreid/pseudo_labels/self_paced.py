"""SpCL's self-paced cluster reliability: keep the clusters that hold at a looser and a tighter eps.

A cluster DBSCAN found at `eps` is trusted when it neither merges into a
neighbour at a slightly looser radius (independence) nor falls apart at a
slightly tighter one (compactness). For an image f with cluster I(f) at eps,
I_loose(f) at eps + gap and I_tight(f) at eps - gap (SpCL, Ge et al. 2020):

    R_indep(f) = |I(f) ∩ I_loose(f)| / |I(f) ∪ I_loose(f)|
    R_comp(f)  = |I(f) ∩ I_tight(f)| / |I(f) ∪ I_tight(f)|

Every outlier is first its own one-image cluster (in all three clusterings),
as SpCL does, so every image has a set. A cluster is independent when its
R_indep (the largest of its members') reaches α; α is the value that keeps
`keep_share` (0.9) of the multi-image clusters the first time it is computed
and stays fixed afterwards, as in SpCL's code. Within a kept cluster, the
images whose R_comp equals the cluster's largest are kept (SpCL's code: β is
per cluster, its members' maximum). Everything else goes back to being a
one-image class: "un-clustered instances", which SpCL still trains on.

The intersections come from joint counts of (label, label') pairs, O(N), not
from SpCL's N × N label-equality matrices, so the criterion scales with the
sparse clustering path.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "ReliableClusters",
    "independence_threshold",
    "iou_with",
    "reliable_clusters",
    "singletons",
]


def singletons(labels: np.ndarray) -> np.ndarray:
    """Labels 0..C-1 with every outlier (-1) as a new one-image label C, C+1, ... in order."""
    raw = np.asarray(labels, dtype=np.int64)
    if raw.ndim != 1:
        raise ValueError(f"labels must be 1-D, found shape {raw.shape}")
    out = np.empty_like(raw)
    clustered = raw >= 0
    _, out[clustered] = np.unique(raw[clustered], return_inverse=True)
    start = int(out[clustered].max()) + 1 if clustered.any() else 0
    out[~clustered] = start + np.arange(int((~clustered).sum()))
    return out


def iou_with(labels: np.ndarray, other: np.ndarray) -> np.ndarray:
    """(N,) |I(f) ∩ I'(f)| / |I(f) ∪ I'(f)| per image, for two outlier-free labellings."""
    a, b = np.asarray(labels, dtype=np.int64), np.asarray(other, dtype=np.int64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"labellings must be two (N,) arrays, found {a.shape} and {b.shape}")
    if a.size and (a.min() < 0 or b.min() < 0):
        raise ValueError("labellings must be outlier-free here (see singletons())")
    pairs = a * (int(b.max()) + 1 if b.size else 1) + b
    _, pair_of, pair_count = np.unique(pairs, return_inverse=True, return_counts=True)
    inter = pair_count[pair_of]
    union = np.bincount(a)[a] + np.bincount(b)[b] - inter
    return inter / union


def independence_threshold(
    cluster_indep: np.ndarray, sizes: np.ndarray, keep_share: float
) -> float:
    """α keeping `keep_share` of the multi-image clusters (SpCL's index rule); nan if none."""
    multi = np.sort(np.asarray(cluster_indep)[np.asarray(sizes) > 1])[::-1]
    if multi.size == 0:
        return float("nan")
    # SpCL sorts 1 - R ascending and takes index round(0.9 n) (numpy rounds half to even)
    return float(multi[min(multi.size - 1, int(np.round(multi.size * keep_share)))])


@dataclass(frozen=True)
class ReliableClusters:
    """The self-paced labels of one epoch and the numbers behind them."""

    labels: np.ndarray  # (N,) 0..C'-1 reliable clusters, then one label per un-clustered image
    num_clusters: int  # C': reliable clusters with two or more images
    indep: np.ndarray  # (N,) R_indep per image
    comp: np.ndarray  # (N,) R_comp per image
    alpha: float  # the independence threshold used

    @property
    def num_unclustered(self) -> int:
        return int(self.labels.size - np.bincount(self.labels)[: self.num_clusters].sum())


def reliable_clusters(
    labels: np.ndarray,
    tight: np.ndarray,
    loose: np.ndarray,
    *,
    alpha: float | None = None,
    keep_share: float = 0.9,
) -> ReliableClusters:
    """SpCL's reliable clusters from DBSCAN labels at eps, eps - gap and eps + gap (-1 = outlier).

    `alpha` is the independence threshold fixed at an earlier epoch; None (or nan)
    computes it from this clustering with `keep_share`.
    """
    if not 0.0 < keep_share <= 1.0:
        raise ValueError(f"keep_share must be in (0, 1], found {keep_share}")
    lab, lt, ll = (singletons(x) for x in (labels, tight, loose))
    if not (lab.shape == lt.shape == ll.shape):
        raise ValueError(
            f"the three labellings must have one label per image, found {lab.shape}, "
            f"{lt.shape}, {ll.shape}"
        )
    comp, indep = iou_with(lab, lt), iou_with(lab, ll)
    n_labels = int(lab.max()) + 1 if lab.size else 0
    cluster_indep = np.zeros(n_labels)
    np.maximum.at(cluster_indep, lab, indep)
    cluster_comp = np.zeros(n_labels)
    np.maximum.at(cluster_comp, lab, comp)
    sizes = np.bincount(lab, minlength=n_labels)
    if alpha is None or np.isnan(alpha):
        alpha = independence_threshold(cluster_indep, sizes, keep_share)
    keep = (cluster_indep[lab] >= alpha) & (comp >= cluster_comp[lab])
    # reliable members keep a cluster only if it still has two or more of them
    kept_label = np.where(keep, lab, -1)
    kept_sizes = np.bincount(kept_label[keep], minlength=n_labels)
    kept_label[keep & (kept_sizes[lab] < 2)] = -1
    out = singletons(kept_label)
    num_clusters = int(out[kept_label >= 0].max()) + 1 if (kept_label >= 0).any() else 0
    return ReliableClusters(out, num_clusters, indep, comp, float(alpha))
