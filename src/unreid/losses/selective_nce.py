"""Selective contrastive loss (SCL, "Mind your clever neighbours", Eq. 7)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from unreid.losses.checks import check_ids, check_loss_inputs
from unreid.losses.cluster_nce import cluster_nce
from unreid.memory.selection import least_similar_per_cluster

__all__ = ["selective_nce"]


def selective_nce(
    x: Tensor,
    targets: Tensor,
    bank: Tensor,
    k: int = 2,
    temperature: float = 0.05,
    *,
    positions: Tensor | None = None,
) -> Tensor:
    """ClusterNCE over the k least similar instances of each cluster in the batch.

    For every cluster l in the batch, its instances are ranked by the cosine
    between the instance and the memory row M[l]; the (at most) k least similar
    q_top_1..k each contribute -log softmax(M q / tau)[l]. The paper writes the
    sum over those terms; this returns their mean, so the scale does not grow
    with the number of clusters in the batch (ClusterNCE's convention).

    `positions` replaces that ranking with a selection made by the caller (`k`
    is then unused): the memory's own `select`, so the loss sees the very
    instances its update will apply, a random draw included.
    """
    check_loss_inputs(x, targets, bank, temperature=temperature)
    targets = targets.long()
    if positions is None:
        sims = (F.normalize(x.detach(), dim=1) * bank.to(x.dtype)[targets]).sum(dim=1)
        positions, _ = least_similar_per_cluster(sims, targets, k)
    else:
        check_ids("positions", positions, x.shape[0], "batch positions")
    return cluster_nce(x[positions], targets[positions], bank, temperature)
