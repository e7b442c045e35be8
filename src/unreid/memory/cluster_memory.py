"""One memory row per pseudo identity, refreshed from the batch after each step.

Cluster Contrast style: at the start of an epoch the bank is rebuilt from the
L2-normalised cluster centroids of the freshly extracted features; during the
epoch each row drifts towards the features of its cluster's instances.

The reference code performs that drift inside `autograd.Function.backward`, so
reading the memory and writing it are the same call. Here the two are separate:
`similarities` only reads, and the engine calls `update` after the optimizer
step. Gradients therefore always see the bank from before the batch's update,
exactly as in the reference (its backward computes the input gradient first and
only then overwrites the rows).

Momentum convention (same as the reference, and the opposite of the usual EMA
naming): `momentum` is the weight of the OLD row,

    M[y] <- momentum * M[y] + (1 - momentum) * x;   M[y] <- M[y] / ||M[y]||

so with the published setting `momentum = 0.1` the new sample dominates.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "ClusterMemory",
    "HardClusterMemory",
    "MeanClusterMemory",
    "MomentumClusterMemory",
    "build_cluster_memory",
]


class ClusterMemory(nn.Module, ABC):
    """A (C, D) bank of unit-norm cluster rows; subclasses choose how a batch moves it.

    The bank is a buffer, so it follows `.to()` / `.double()` and is saved in the
    state dict, and no gradient can reach it. Its row count changes every epoch
    (`reset`), and loading a state dict resizes it to the saved row count so a
    checkpoint can be restored before the first `reset`.
    """

    bank: Tensor

    def __init__(self, num_features: int, momentum: float = 0.1) -> None:
        super().__init__()
        if isinstance(num_features, bool) or not isinstance(num_features, int) or num_features < 1:
            raise ValueError(f"num_features must be a positive int, found {num_features!r}")
        momentum = float(momentum)
        if not (0.0 <= momentum <= 1.0):
            raise ValueError(
                f"momentum must be in [0, 1] (weight of the old row), found {momentum}"
            )
        self.num_features = num_features
        self.momentum = momentum
        self.register_buffer("bank", torch.zeros(0, num_features))

    @property
    def num_clusters(self) -> int:
        return self.bank.shape[0]

    def extra_repr(self) -> str:
        return (
            f"num_features={self.num_features}, num_clusters={self.num_clusters}, "
            f"momentum={self.momentum}"
        )

    @torch.no_grad()
    def reset(self, centroids: Tensor) -> None:
        """Replace the bank with `centroids` (C, D), each row L2-normalised.

        The bank keeps this module's device and dtype, whatever `centroids` uses.
        """
        if not isinstance(centroids, Tensor):
            raise TypeError(f"centroids must be a torch.Tensor, found {type(centroids).__name__}")
        if centroids.dim() != 2 or centroids.shape[1] != self.num_features:
            raise ValueError(
                f"centroids must have shape (C, {self.num_features}), "
                f"found {tuple(centroids.shape)}"
            )
        if centroids.shape[0] == 0:
            raise ValueError("centroids must have at least one row, found 0")
        if not centroids.is_floating_point():
            raise TypeError(f"centroids must be floating point, found {centroids.dtype}")
        if not torch.isfinite(centroids).all():
            raise ValueError("centroids must be finite, found NaN or inf")
        rows = centroids.detach().to(device=self.bank.device, dtype=self.bank.dtype)
        norms = rows.norm(dim=1, keepdim=True)
        zero = (norms.squeeze(1) == 0).nonzero().flatten()
        if zero.numel():
            raise ValueError(
                f"centroids rows must be non-zero to be normalised, found zero rows at "
                f"{zero[:10].tolist()}"
            )
        self.bank = rows / norms

    def similarities(self, x: Tensor) -> Tensor:
        """`x @ bank.T` (B, C): a pure read; the caller normalises `x` if it wants cosines."""
        self._check_features(x, "x")
        return x @ self.bank.to(x.dtype).T

    @torch.no_grad()
    def update(self, x: Tensor, targets: Tensor) -> None:
        """Move the rows of the clusters in `targets` towards the batch features `x`.

        `x` is L2-normalised here (as the reference does in its forward), so the
        raw embeddings and unit embeddings give the same bank. Call after the
        optimizer step, with the embeddings the loss was computed from.
        """
        self._check_features(x, "x")
        targets = self._check_targets(targets, x.shape[0])
        if x.shape[0] == 0:
            return
        x = F.normalize(x.detach().to(self.bank.dtype), dim=1)
        self._apply_update(x, targets)

    @abstractmethod
    def _apply_update(self, x: Tensor, targets: Tensor) -> None:
        """Policy-specific update; `x` is unit-norm in the bank's dtype, targets validated."""

    def _momentum_step(self, rows: Tensor, values: Tensor) -> None:
        """One momentum update of the DISTINCT `rows` towards `values`, then renormalise."""
        mixed = self.momentum * self.bank[rows] + (1.0 - self.momentum) * values
        self.bank[rows] = F.normalize(mixed, dim=1)

    def _check_features(self, x: Tensor, name: str) -> None:
        if self.num_clusters == 0:
            raise RuntimeError("the memory bank is empty: call reset(centroids) first")
        if not isinstance(x, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, found {type(x).__name__}")
        if x.dim() != 2 or x.shape[1] != self.num_features:
            raise ValueError(
                f"{name} must have shape (B, {self.num_features}), found {tuple(x.shape)}"
            )

    def _check_targets(self, targets: Tensor, batch: int) -> Tensor:
        if not isinstance(targets, Tensor):
            raise TypeError(f"targets must be a torch.Tensor, found {type(targets).__name__}")
        if targets.dim() != 1 or targets.shape[0] != batch:
            raise ValueError(f"targets must have shape ({batch},), found {tuple(targets.shape)}")
        if targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool:
            raise TypeError(f"targets must be an integer tensor, found {targets.dtype}")
        if batch and (targets.min() < 0 or targets.max() >= self.num_clusters):
            raise ValueError(
                f"targets must be cluster ids in [0, {self.num_clusters}), found values in "
                f"[{int(targets.min())}, {int(targets.max())}]"
            )
        return targets.to(device=self.bank.device, dtype=torch.long)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, *args):
        # The row count is a per-epoch value, not architecture: adopt the saved one.
        saved = state_dict.get(prefix + "bank")
        if isinstance(saved, Tensor) and saved.dim() == 2 and saved.shape[1] == self.num_features:
            self.bank = torch.empty(saved.shape, device=self.bank.device, dtype=self.bank.dtype)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, *args)


class MomentumClusterMemory(ClusterMemory):
    """Every instance updates its row once, in batch order (the reference default).

    Later instances of a cluster see the rows already moved by earlier ones, so
    with `momentum = 0.1` the last instance of each cluster dominates. The loop
    runs over the position within a cluster and is vectorised across clusters,
    which keeps the per-cluster sequence exact.
    """

    def _apply_update(self, x: Tensor, targets: Tensor) -> None:
        order = torch.sort(targets, stable=True).indices  # grouped by cluster, batch order kept
        sorted_targets = targets[order]
        starts = torch.ones_like(sorted_targets, dtype=torch.bool)
        starts[1:] = sorted_targets[1:] != sorted_targets[:-1]
        group_start = torch.cummax(
            torch.where(starts, torch.arange(len(order), device=order.device), 0), dim=0
        ).values
        rank = torch.empty_like(order)
        rank[order] = torch.arange(len(order), device=order.device) - group_start
        for r in range(int(rank.max()) + 1):
            step = (rank == r).nonzero().flatten()  # batch order; clusters distinct
            self._momentum_step(targets[step], x[step])


class HardClusterMemory(ClusterMemory):
    """Per cluster in the batch, only its least similar instance updates the row.

    Similarity is the cosine to the row before this batch's update; ties go to
    the first such instance in batch order. Pulling towards the hardest positive
    keeps the row from collapsing onto the easy, camera-biased majority.
    """

    def _apply_update(self, x: Tensor, targets: Tensor) -> None:
        sims = (x * self.bank[targets]).sum(dim=1)
        clusters = torch.unique(targets)
        lowest = torch.full((self.num_clusters,), math.inf, dtype=sims.dtype, device=sims.device)
        lowest = lowest.scatter_reduce(0, targets, sims, reduce="amin")
        positions = torch.arange(len(targets), device=targets.device)
        candidate = torch.where(sims == lowest[targets], positions, len(targets))
        first = torch.full_like(lowest, len(targets), dtype=torch.long)
        first = first.scatter_reduce(0, targets, candidate, reduce="amin")
        self._momentum_step(clusters, x[first[clusters]])


class MeanClusterMemory(ClusterMemory):
    """Per cluster in the batch, one update towards the plain mean of its instances.

    The mean of unit vectors is not renormalised before mixing (as HHCL's mean
    centroids), so a spread-out cluster moves its row less than a tight one.
    """

    def _apply_update(self, x: Tensor, targets: Tensor) -> None:
        sums = torch.zeros(self.num_clusters, x.shape[1], dtype=x.dtype, device=x.device)
        sums.index_add_(0, targets, x)
        counts = torch.bincount(targets, minlength=self.num_clusters)
        clusters = counts.nonzero().flatten()
        means = sums[clusters] / counts[clusters].unsqueeze(1).to(x.dtype)
        self._momentum_step(clusters, means)


_POLICIES: dict[str, type[ClusterMemory]] = {
    "momentum": MomentumClusterMemory,
    "hard": HardClusterMemory,
    "mean": MeanClusterMemory,
}


def build_cluster_memory(policy: str, num_features: int, momentum: float = 0.1) -> ClusterMemory:
    """Config-facing constructor: the policy name picks the class."""
    try:
        cls = _POLICIES[policy]
    except (KeyError, TypeError):
        raise ValueError(f"policy must be one of {sorted(_POLICIES)}, found {policy!r}") from None
    return cls(num_features, momentum)
