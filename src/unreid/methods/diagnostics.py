"""Per-epoch numbers that say why a method's modules help or hurt (logged as `diagnostics`).

Pseudo-label ARI and the cluster count say *that* an epoch went wrong; these
say *where*: whether GCL's cluster refinement attends to the same person
(`attention_diagnostics`), whether SAA's dispersion finds the images a cluster
wrongly holds (`dispersion_diagnostics`), and how far a memory row travels from
its epoch-start centroid (`ClusterMemory.start_cosine`). Truth-based numbers
need ground-truth identities (the synthetic set, or a labelled set trained
unsupervised) and are left out without them. Nothing here feeds training.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score


def attention_diagnostics(
    entropy: np.ndarray, top: np.ndarray, labels: np.ndarray, true_ids: np.ndarray | None
) -> dict[str, float]:
    """Mean attention entropy, and how often a row's top neighbour shares its label / identity.

    ``top[i]`` is the node row i attends to most (itself excluded, -1 for a graph
    of one). ``top_same_pseudo`` counts rows where both images are clustered;
    ``top_same_identity`` counts every row with a neighbour.
    """
    entropy, top, labels = np.asarray(entropy), np.asarray(top), np.asarray(labels)
    _check_rows(entropy=entropy, top=top, labels=labels)
    out = {"attention_entropy": float(entropy.mean())}
    has = top >= 0
    both = has.copy()
    both[has] = (labels[has] >= 0) & (labels[top[has]] >= 0)
    out["top_same_pseudo"] = _mean(labels[both] == labels[top[both]])
    if true_ids is not None:
        truth = np.asarray(true_ids)
        _check_rows(labels=labels, true_ids=truth)
        out["top_same_identity"] = _mean(truth[has] == truth[top[has]])
    return out


def impure_members(labels: np.ndarray, true_ids: np.ndarray) -> np.ndarray:
    """True for a clustered image whose identity is not its cluster's most common one.

    Ties for the most common identity go to the smallest id, so the count is exact.
    """
    labels, truth = np.asarray(labels), np.asarray(true_ids)
    _check_rows(labels=labels, true_ids=truth)
    impure = np.zeros(labels.shape, dtype=bool)
    for c in np.unique(labels[labels >= 0]):
        members = np.nonzero(labels == c)[0]
        ids, counts = np.unique(truth[members], return_counts=True)
        impure[members] = truth[members] != ids[np.argmax(counts)]
    return impure


def dispersion_diagnostics(
    dispersion: np.ndarray, labels: np.ndarray, true_ids: np.ndarray | None
) -> dict[str, float]:
    """How well a per-image dispersion ranks a cluster's wrongly included images first.

    ``dispersion_std``: the spread over clustered images. SAA's dispersion is
    1 - n * (received attention), which averages to exactly 0 within every cluster,
    so its mean says nothing; its spread says whether the attention is uniform
    (std 0: prototypes are plain means and HPS picks among ties).
    ``dispersion_outlier_auc``: the probability that an impure member (see
    `impure_members`) has a higher dispersion than a pure one, over all clustered
    images (0.5 = no better than chance; NaN when either kind is missing).
    """
    dispersion, labels = np.asarray(dispersion), np.asarray(labels)
    _check_rows(dispersion=dispersion, labels=labels)
    clustered = labels >= 0
    kept = dispersion[clustered]
    out = {"dispersion_std": float(kept.std()) if kept.size else float("nan")}
    if true_ids is None:
        return out
    impure = impure_members(labels, true_ids)[clustered]
    out["impure_fraction"] = _mean(impure)
    if impure.all() or not impure.any():
        out["dispersion_outlier_auc"] = float("nan")
    else:
        out["dispersion_outlier_auc"] = float(roc_auc_score(impure, dispersion[clustered]))
    return out


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else float("nan")


def _check_rows(**arrays: np.ndarray) -> None:
    shapes = {name: a.shape for name, a in arrays.items()}
    if any(a.ndim != 1 for a in arrays.values()) or len(set(shapes.values())) != 1:
        found = ", ".join(f"{name} {shape}" for name, shape in shapes.items())
        raise ValueError(f"expected one value per training image in each array, found {found}")
