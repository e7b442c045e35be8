"""Selective contrastive loss (SCL, "Mind your clever neighbours", Eq. 7)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from unreid.losses.cluster_nce import cluster_nce
from unreid.memory.selection import least_similar_per_cluster

__all__ = ["selective_nce"]


def selective_nce(
    x: Tensor, targets: Tensor, bank: Tensor, k: int = 2, temperature: float = 0.05
) -> Tensor:
    """ClusterNCE over the k least similar instances of each cluster in the batch.

    For every cluster l in the batch, its instances are ranked by the cosine
    between the instance and the memory row M[l]; the (at most) k least similar
    q_top_1..k each contribute -log softmax(M q / tau)[l]. The paper writes the
    sum over those terms; this returns their mean, so the scale does not grow
    with the number of clusters in the batch (ClusterNCE's convention).
    """
    if not isinstance(x, Tensor) or x.dim() != 2:
        raise ValueError("x must be a 2-D tensor (B, D)")
    if not isinstance(bank, Tensor) or bank.dim() != 2 or bank.shape[1] != x.shape[1]:
        raise ValueError(f"bank must have shape (C, {x.shape[1]}) to match x")
    if not isinstance(targets, Tensor) or targets.shape != (x.shape[0],):
        raise ValueError(f"targets must have shape ({x.shape[0]},)")
    if bank.shape[0] == 0 or x.shape[0] == 0:
        raise ValueError("x and bank must each hold at least one row")
    if targets.min() < 0 or targets.max() >= bank.shape[0]:
        raise ValueError(f"targets must be cluster ids in [0, {bank.shape[0]})")
    targets = targets.long()
    sims = (F.normalize(x.detach(), dim=1) * bank.to(x.dtype)[targets]).sum(dim=1)
    positions, _ = least_similar_per_cluster(sims, targets, k)
    return cluster_nce(x[positions], targets[positions], bank, temperature)
