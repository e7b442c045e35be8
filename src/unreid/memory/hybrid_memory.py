"""SpCL's hybrid memory: source class centroids and one feature per target image.

SpCL (Ge et al., NeurIPS 2020) keeps every target image's feature, not a row
per cluster: a cluster's centroid is the mean of its members' stored features
at the moment the loss reads it, and an image no cluster holds is a class of
its own. So the rows never need rebuilding when the clusters change, and the
"un-clustered instances" stay in the contrast as negatives for everyone.

Rows [0, S) are the labelled source classes (domain adaptation; S = 0
alone), rows [S, S + N) the N target images in dataset order. `row_classes`
maps every row to its class for this epoch: source row k is class k, target
image i is class S + (its self-paced label). After each optimizer step, every
batch feature moves its own row (a source sample its class row, a target
sample its image row) with momentum m (weight of the old row, 0.2 in SpCL),
and the row is renormalised, one instance after the other in batch order.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from unreid.memory.read_only_bank import ReadOnlyBank
from unreid.memory.selection import rank_within_clusters

__all__ = ["HybridMemory"]


class HybridMemory(ReadOnlyBank):
    """(S + N, D) unit rows, each row's class this epoch, and S (all buffers, saved)."""

    row_classes: Tensor
    num_source: Tensor

    def __init__(self, num_features: int, momentum: float = 0.2) -> None:
        if not 0.0 <= momentum < 1.0:
            raise ValueError(
                f"momentum must be in [0, 1) (weight of the old row), found {momentum}"
            )
        super().__init__(torch.zeros(0, num_features))
        self.num_features = num_features
        self.momentum = float(momentum)
        self.register_buffer("row_classes", torch.zeros(0, dtype=torch.long))
        self.register_buffer("num_source", torch.zeros((), dtype=torch.long))

    @property
    def num_target(self) -> int:
        return self.bank.shape[0] - int(self.num_source)

    @property
    def num_classes(self) -> int:
        return int(self.row_classes.max()) + 1 if self.row_classes.numel() else 0

    def extra_repr(self) -> str:
        return (
            f"num_features={self.num_features}, source={int(self.num_source)}, "
            f"target={self.num_target}, momentum={self.momentum}"
        )

    @torch.no_grad()
    def reset(self, source: Tensor, target: Tensor) -> None:
        """Rows from source class centroids (S, D) (S may be 0) and target features (N, D)."""
        for name, rows in (("source", source), ("target", target)):
            if rows.dim() != 2 or rows.shape[1] != self.num_features:
                raise ValueError(
                    f"{name} must be (rows, {self.num_features}), found {tuple(rows.shape)}"
                )
            if not torch.isfinite(rows).all() or bool((rows.norm(dim=1) == 0).any()):
                raise ValueError(f"{name} rows must be finite and non-zero")
        if target.shape[0] == 0:
            raise ValueError("target must hold at least one image feature, found 0")
        rows = torch.cat([source, target.to(source.device)]).to(self.bank.device, self.bank.dtype)
        self._replace_bank(F.normalize(rows, dim=1))
        self.num_source.fill_(source.shape[0])
        self.row_classes = torch.cat(
            [torch.arange(source.shape[0]), torch.full((target.shape[0],), -1)]
        ).to(self.bank.device)

    @torch.no_grad()
    def set_target_classes(self, labels: Tensor) -> None:
        """This epoch's class of every target image (N,), 0-based; source classes come first."""
        n, s = self.num_target, int(self.num_source)
        labels = torch.as_tensor(labels, dtype=torch.long, device=self.bank.device)
        if labels.shape != (n,) or (n and labels.min() < 0):
            raise ValueError(
                f"labels must be ({n},) class ids >= 0, one per target image, "
                f"found {tuple(labels.shape)}"
            )
        if n and int(labels.max()) + 1 != int(labels.unique().numel()):
            raise ValueError("target classes must be contiguous 0..C-1 (a class has no image)")
        self.row_classes[s:] = labels + s

    def class_sizes(self) -> Tensor:
        """(classes,) member rows per class (0 for a class no row holds)."""
        return torch.bincount(self.row_classes, minlength=self.num_classes)

    def centroids(self) -> Tensor:
        """(classes, D): each class's mean stored feature (not renormalised, as SpCL's Eq. 2)."""
        k = self.num_classes
        sums = torch.zeros(k, self.num_features, device=self.bank.device, dtype=self.bank.dtype)
        sums.index_add_(0, self.row_classes, self.bank)
        counts = self.class_sizes().clamp(min=1)
        return sums / counts.unsqueeze(1).to(sums.dtype)

    @torch.no_grad()
    def update(self, x: Tensor, rows: Tensor) -> None:
        """Each feature of `x` (B, D) moves `rows[b]`, in batch order; features are normalised."""
        if x.dim() != 2 or x.shape[1] != self.num_features or rows.shape != (x.shape[0],):
            raise ValueError(
                f"x must be (B, {self.num_features}) and rows (B,), found {tuple(x.shape)} "
                f"and {tuple(rows.shape)}"
            )
        rows = rows.to(self.bank.device, torch.long)
        if rows.numel() and (rows.min() < 0 or rows.max() >= self.bank.shape[0]):
            raise ValueError(
                f"rows must be in [0, {self.bank.shape[0]}), found [{int(rows.min())}, "
                f"{int(rows.max())}]"
            )
        x = F.normalize(x.detach().to(self.bank.device, self.bank.dtype), dim=1)
        # a row hit twice in one batch moves twice, in batch order: step by occurrence rank
        order = rank_within_clusters(torch.arange(len(rows), device=rows.device), rows)
        for r in range(int(order.max()) + 1 if order.numel() else 0):
            at = (order == r).nonzero().flatten()
            mixed = self.momentum * self.bank[rows[at]] + (1.0 - self.momentum) * x[at]
            self.bank[rows[at]] = F.normalize(mixed, dim=1)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, *args):
        # Row counts are data, not architecture: adopt the saved ones before copying.
        for name in ("bank", "row_classes"):
            saved = state_dict.get(prefix + name)
            if isinstance(saved, Tensor):
                fresh = torch.empty(saved.shape, device=self.bank.device, dtype=saved.dtype)
                if name == "bank":
                    self._replace_bank(fresh.to(self.bank.dtype))
                else:
                    self.row_classes = fresh
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, *args)
