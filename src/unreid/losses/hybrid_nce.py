"""SpCL's unified contrastive loss over source classes, target clusters and lone target images."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from unreid.losses.checks import check_loss_inputs

__all__ = ["hybrid_nce"]


def hybrid_nce(x: Tensor, classes: Tensor, centroids: Tensor, temperature: float = 0.05) -> Tensor:
    """Mean cross-entropy of `normalize(x) @ centroids.T / temperature` against `classes`.

    `centroids` holds one row per class of the hybrid memory (source class rows,
    target cluster means of stored image features, and the stored feature of
    each un-clustered image: `HybridMemory.centroids()`), so every sample is
    contrasted with all three at once (SpCL, Eq. 2). Cluster rows are plain
    means, not renormalised: x·mean equals the mean of x's similarities to the
    members, which is how SpCL's code computes it.
    """
    check_loss_inputs(x, classes, centroids, temperature=temperature, targets_name="classes")
    logits = F.normalize(x, dim=1) @ centroids.to(x.dtype).T / float(temperature)
    return F.cross_entropy(logits, classes.long())
