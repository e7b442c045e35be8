"""HHCL's instance memory: K instance features per pseudo identity, shaped (C, K, D).

Keeping the bank as a dense (clusters × slots × dim) tensor makes hard mining a
couple of tensor ops per step (one einsum, one min, one max) instead of a
Python loop over clusters. Slots are written by Eq. 8 of the paper,
`m_k^i ← z_k^i`: each cluster's batch features overwrite its slots, no momentum.

Two things the paper leaves open, decided here:
- Initialisation: a cluster of n ≥ K members gets K distinct members drawn at
  random; a smaller cluster gets all n members and fills the remaining slots
  by drawing members again (with replacement), so every slot holds a real
  feature of the cluster.
- Writing: each cluster keeps a ring pointer; a batch with n features of a
  cluster writes them to the next n slots in batch order (with the P×K
  sampler n = K, i.e. the paper's full overwrite). If n > K only the last K
  are kept, where the released code crashes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from unreid.memory.read_only_bank import ReadOnlyBank

__all__ = ["InstanceMemory"]


class InstanceMemory(ReadOnlyBank):
    """(C, K, D) bank of instance features plus each cluster's ring pointer (both buffers)."""

    pointer: Tensor

    def __init__(self, num_features: int, slots: int) -> None:
        if slots < 1:
            raise ValueError(f"slots (instances per cluster) must be >= 1, found {slots}")
        super().__init__(torch.zeros(0, slots, num_features))
        self.num_features = num_features
        self.slots = slots
        self.register_buffer("pointer", torch.zeros(0, dtype=torch.long))

    @property
    def num_clusters(self) -> int:
        return self.bank.shape[0]

    @torch.no_grad()
    def reset(
        self, features: Tensor, labels: Tensor, generator: torch.Generator | None = None
    ) -> None:
        """Fill every cluster's K slots from its members (`labels` −1 = outlier, skipped)."""
        if features.dim() != 2 or features.shape[1] != self.num_features:
            raise ValueError(
                f"features must be (N, {self.num_features}), found {tuple(features.shape)}"
            )
        if labels.shape != (features.shape[0],):
            raise ValueError(f"labels must be ({features.shape[0]},), found {tuple(labels.shape)}")
        labels = labels.to(features.device)
        num_clusters = int(labels.max().item()) + 1 if (labels >= 0).any() else 0
        if num_clusters == 0:
            raise ValueError("no clustered samples (all labels are -1)")
        feats = F.normalize(features.detach().to(self.bank.dtype), dim=1)
        # Members of each cluster in random order: shuffle, then a stable sort by label.
        order = torch.randperm(labels.shape[0], generator=generator).to(features.device)
        order = order[torch.argsort(labels[order], stable=True)]
        order = order[labels[order] >= 0]
        sorted_labels = labels[order]
        counts = torch.bincount(sorted_labels, minlength=num_clusters)
        if (counts == 0).any():
            missing = (counts == 0).nonzero().flatten()[:5].tolist()
            raise ValueError(f"cluster ids must be contiguous 0..C-1; empty clusters {missing}")
        starts = torch.cumsum(counts, 0) - counts
        slot = torch.arange(self.slots, device=features.device)
        # Slot k of cluster c: member k if k < n_c, otherwise a random member (with replacement).
        extra = (
            torch.rand(num_clusters, self.slots, generator=generator).to(features.device)
            * counts.unsqueeze(1)
        ).long()
        pick = torch.where(slot.unsqueeze(0) < counts.unsqueeze(1), slot.unsqueeze(0), extra)
        self._replace_bank(feats[order[starts.unsqueeze(1) + pick]])
        self.pointer = torch.zeros(num_clusters, dtype=torch.long, device=features.device)

    @torch.no_grad()
    def update(self, x: Tensor, targets: Tensor) -> None:
        """Eq. 8: overwrite each batch cluster's next slots with its batch features."""
        if self.num_clusters == 0:
            raise RuntimeError("the instance memory is empty: call reset() first")
        if x.dim() != 2 or x.shape != (targets.shape[0], self.num_features):
            raise ValueError(
                f"x must be ({targets.shape[0]}, {self.num_features}), found {tuple(x.shape)}"
            )
        if targets.numel() and (targets.min() < 0 or targets.max() >= self.num_clusters):
            raise ValueError(f"targets must be in [0, {self.num_clusters}), found out-of-range ids")
        x = F.normalize(x.detach().to(self.bank.dtype), dim=1)
        # rank of each sample among the batch samples of its cluster, in batch order
        same = targets.unsqueeze(0) == targets.unsqueeze(1)
        rank = torch.tril(same, diagonal=-1).sum(1)
        count = torch.bincount(targets, minlength=self.num_clusters)
        keep = rank >= count[targets] - self.slots  # only the last K of a cluster survive
        first_kept = (count[targets] - self.slots).clamp(min=0)
        slot = (self.pointer[targets] + rank - first_kept) % self.slots
        self.bank[targets[keep], slot[keep]] = x[keep]
        self.pointer += count.clamp(max=self.slots)
        self.pointer %= self.slots
