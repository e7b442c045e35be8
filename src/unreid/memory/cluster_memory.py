"""One memory row per pseudo identity, refreshed from the batch after each step.

Cluster Contrast style: at the start of an epoch the bank is rebuilt from the
L2-normalised cluster centroids of the freshly extracted features; during the
epoch each row drifts towards the features of its cluster's instances.

The reference code performs that drift inside `autograd.Function.backward`, so
reading the memory and writing it are the same call. Here the two are separate:
losses only read `bank`, and the engine calls `update` after the optimizer
step. Gradients therefore always see the bank from before the batch's update,
exactly as in the reference (its backward computes the input gradient first and
only then overwrites the rows).

An update policy is two choices: which batch instances move their cluster's
row, and in which order (`select` -> positions and ranks), and how the chosen
instances move it (`update_selected`; by default one momentum step per rank,
rank 0 first). Splitting the two lets a loss use the very instances the update
will use (SCL), or a caller rank the instances itself (CSA+HPS).

Momentum convention (same as the reference, and the opposite of the usual EMA
naming): `momentum` is the weight of the OLD row,

    M[y] <- momentum * M[y] + (1 - momentum) * x;   M[y] <- M[y] / ||M[y]||

so with the published setting `momentum = 0.1` the new sample dominates.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from unreid.memory.read_only_bank import ReadOnlyBank

__all__ = ["ClusterMemory"]


class ClusterMemory(ReadOnlyBank, ABC):
    """A (C, D) bank of unit-norm cluster rows; subclasses choose how a batch moves it.

    The bank is a buffer, so it follows `.to()` / `.double()` and is saved in the
    state dict, and no gradient can reach it. Its row count changes every epoch
    (`reset`), and loading a state dict resizes it to the saved row count so a
    checkpoint can be restored before the first `reset`.
    """

    # keyword options of the constructor beyond (num_features, momentum), for the factory
    options: ClassVar[tuple[str, ...]] = ()

    def __init__(self, num_features: int, momentum: float = 0.1) -> None:
        if isinstance(num_features, bool) or not isinstance(num_features, int) or num_features < 1:
            raise ValueError(f"num_features must be a positive int, found {num_features!r}")
        momentum = float(momentum)
        if not (0.0 <= momentum <= 1.0):
            raise ValueError(
                f"momentum must be in [0, 1] (weight of the old row), found {momentum}"
            )
        super().__init__(torch.zeros(0, num_features))
        self.num_features = num_features
        self.momentum = momentum

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
        self._replace_bank(rows / norms)
        self._start = self.bank.clone()  # for `start_cosine`; not state: resets precede steps

    @torch.no_grad()
    def start_cosine(self) -> float | None:
        """Mean cosine between each row and its value at the last `reset` (None before one).

        How far the updates moved the memory from the epoch's centroids: 1 means
        untouched, a low value means rows were pulled onto a few (possibly atypical)
        instances. A diagnostic only (`Method.diagnostics`).
        """
        start = getattr(self, "_start", None)
        if start is None or start.shape != self.bank.shape:
            return None
        return float((self.bank * start.to(self.bank.device)).sum(dim=1).mean())

    @torch.no_grad()
    def update(self, x: Tensor, targets: Tensor) -> None:
        """Move the rows of the clusters in `targets` towards the batch features `x`.

        `x` is L2-normalised here (as the reference does in its forward), so the
        raw embeddings and unit embeddings give the same bank. Call after the
        optimizer step, with the embeddings the loss was computed from.
        """
        x, targets = self._unit_batch(x, targets)
        if x.shape[0] == 0:
            return
        positions, ranks = self._select(x, targets, None)
        self._apply_selection(x, targets, positions, ranks)

    @torch.no_grad()
    def select(
        self, x: Tensor, targets: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """`(positions, ranks)` of the batch instances `update` would use, by rank then cluster.

        Made against the current bank; `update_selected` applies it later (a
        random policy must apply the draw a loss already used).
        """
        x, targets = self._unit_batch(x, targets)
        return self._select(x, targets, generator)

    @torch.no_grad()
    def update_selected(self, x: Tensor, targets: Tensor, positions: Tensor, ranks: Tensor) -> None:
        """Apply a selection from `select`, or one ranked by the caller (0 = applied first)."""
        x, targets = self._unit_batch(x, targets)
        if positions.dim() != 1 or positions.shape != ranks.shape:
            raise ValueError(
                f"positions and ranks must be two (S,) tensors, found {tuple(positions.shape)} "
                f"and {tuple(ranks.shape)}"
            )
        if positions.numel() == 0:
            return
        self._apply_selection(x, targets, positions, ranks)

    @abstractmethod
    def _select(
        self, x: Tensor, targets: Tensor, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor]:
        """The policy's choice; `x` is unit-norm in the bank's dtype, targets validated."""

    def _apply_selection(
        self, x: Tensor, targets: Tensor, positions: Tensor, ranks: Tensor
    ) -> None:
        """One momentum step per rank, rank 0 first; within a rank the clusters are distinct.

        So a cluster's instances move its row one after the other, each seeing
        the row the previous one left, while the clusters are stepped together.
        """
        for r in range(int(ranks.max()) + 1 if ranks.numel() else 0):
            step = positions[ranks == r]
            self._momentum_step(targets[step], x[step])

    def _momentum_step(self, rows: Tensor, values: Tensor) -> None:
        """One momentum update of the DISTINCT `rows` towards `values`, then renormalise."""
        mixed = self.momentum * self.bank[rows] + (1.0 - self.momentum) * values
        self.bank[rows] = F.normalize(mixed, dim=1)

    def _unit_batch(self, x: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """Validated batch: `x` unit-norm and detached in the bank's dtype, targets long."""
        self._check_features(x, "x")
        targets = self._check_targets(targets, x.shape[0])
        return F.normalize(x.detach().to(self.bank.dtype), dim=1), targets

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
            self._replace_bank(
                torch.empty(saved.shape, device=self.bank.device, dtype=self.bank.dtype)
            )
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, *args)
