"""Pseudo labels for one epoch, with the summaries training and logging need.

Cluster ids are renumbered to 0..C-1 at construction so they can index memory
rows directly; -1 always means "outlier, not trained on this epoch".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score


@dataclass(frozen=True, eq=False)
class PseudoLabels:
    """Per-sample cluster ids; any negative input id is an outlier (-1).

    The stored array is a read-only int64 copy, so a frozen instance really is
    immutable and cannot drift from the memory bank built from it.
    """

    labels: np.ndarray

    def __post_init__(self) -> None:
        raw = np.asarray(self.labels)
        if raw.ndim != 1:
            raise ValueError(f"labels must be 1-D, found shape {raw.shape}")
        if raw.size and not np.issubdtype(raw.dtype, np.integer):
            raise ValueError(f"labels must be integers, found dtype {raw.dtype}")
        raw = raw.astype(np.int64)
        if raw.size and raw.min() < -1:
            raise ValueError(f"labels must be >= -1 (-1 = outlier), found {raw.min()}")
        out = np.full(raw.shape, -1, dtype=np.int64)
        clustered = raw >= 0
        # sorted order keeps already-contiguous ids unchanged
        out[clustered] = np.unique(raw[clustered], return_inverse=True)[1]
        out.setflags(write=False)
        object.__setattr__(self, "labels", out)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PseudoLabels):
            return NotImplemented
        return np.array_equal(self.labels, other.labels)

    def __hash__(self) -> int:
        return hash(self.labels.tobytes())

    def __len__(self) -> int:
        return int(self.labels.size)

    @property
    def num_clusters(self) -> int:
        return int(self.labels.max()) + 1 if self.labels.size else 0

    @property
    def clustered_mask(self) -> np.ndarray:
        """True for samples that belong to a cluster (the ones trained on)."""
        return self.labels >= 0

    @property
    def num_outliers(self) -> int:
        return int((self.labels < 0).sum())

    @property
    def outlier_ratio(self) -> float:
        return self.num_outliers / len(self) if len(self) else 0.0

    def cluster_sizes(self) -> np.ndarray:
        """(C,) int64 member counts, indexed by cluster id."""
        return np.bincount(self.labels[self.clustered_mask], minlength=self.num_clusters)

    def centroids(self, features: torch.Tensor) -> torch.Tensor:
        """(C, D) L2-normalised cluster means, row c for cluster c; outliers excluded.

        These initialise the cluster memory, whose logits are cosine similarities,
        hence the normalisation.
        """
        feats = torch.as_tensor(features)
        if feats.ndim != 2 or feats.shape[0] != len(self):
            raise ValueError(
                f"features must be (N, D) with N={len(self)} (one row per label), "
                f"found shape {tuple(feats.shape)}"
            )
        if not feats.is_floating_point():
            raise ValueError(f"features must be floating point, found dtype {feats.dtype}")
        mask = torch.tensor(self.clustered_mask, device=feats.device)
        ids = torch.tensor(self.labels, device=feats.device)[mask]
        sums = torch.zeros(
            self.num_clusters, feats.shape[1], dtype=feats.dtype, device=feats.device
        )
        sums.index_add_(0, ids, feats[mask])
        return F.normalize(sums, dim=1)

    def stats(self) -> dict[str, float | int]:
        """Counts and cluster-size summary for logs."""
        sizes = self.cluster_sizes()
        return {
            "samples": len(self),
            "clusters": self.num_clusters,
            "outliers": self.num_outliers,
            "outlier_ratio": self.outlier_ratio,
            "size_min": int(sizes.min()) if sizes.size else 0,
            "size_median": float(np.median(sizes)) if sizes.size else 0.0,
            "size_max": int(sizes.max()) if sizes.size else 0,
        }

    def quality(self, true_ids: Sequence[int]) -> dict[str, float]:
        """Agreement with ground-truth identities (ARI, NMI).

        ``ari``/``nmi`` count every outlier as its own singleton cluster: dropping
        outliers would reward a clustering that discards every hard sample, while
        lumping them into one "-1" cluster would reward a giant junk cluster.
        ``ari_clustered``/``nmi_clustered`` score only the clustered samples (NaN
        when there are none); ``clustered_fraction`` says how many that is.
        """
        truth = np.asarray(true_ids)
        if truth.shape != self.labels.shape:
            raise ValueError(
                f"true_ids must have one id per sample, expected shape {self.labels.shape}, "
                f"found {truth.shape}"
            )
        if len(self) == 0:
            raise ValueError("quality() needs at least one sample, found 0")
        pred = self.labels.copy()
        outliers = pred < 0
        pred[outliers] = self.num_clusters + np.arange(int(outliers.sum()))
        mask = ~outliers
        if mask.any():
            ari_c = float(adjusted_rand_score(truth[mask], pred[mask]))
            nmi_c = float(normalized_mutual_info_score(truth[mask], pred[mask]))
        else:
            ari_c = nmi_c = float("nan")
        return {
            "ari": float(adjusted_rand_score(truth, pred)),
            "nmi": float(normalized_mutual_info_score(truth, pred)),
            "ari_clustered": ari_c,
            "nmi_clustered": nmi_c,
            "clustered_fraction": float(mask.mean()),
        }
