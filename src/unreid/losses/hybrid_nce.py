"""SpCL's unified contrastive loss over source classes, target clusters and lone target images."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from unreid.losses.checks import check_loss_inputs

__all__ = ["OFFICIAL_EPSILON", "hybrid_nce", "hybrid_nce_official"]

OFFICIAL_EPSILON = 1e-6  # the constant SpCL's code adds in its softmax sum and its logarithm


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


def hybrid_nce_official(
    x: Tensor,
    classes: Tensor,
    centroids: Tensor,
    temperature: float = 0.05,
    present: Tensor | None = None,
    epsilon: float = OFFICIAL_EPSILON,
) -> Tensor:
    """The same contrast as SpCL's released `HybridMemory.forward` computes it.

    With s = normalize(x) @ centroids.T / temperature, the code's masked softmax is
    p_c = exp(s_c) / (sum over present classes of exp(s_j) + epsilon) and the loss is
    the mean of -log(p_y + epsilon) (`present`: the classes with members, all when
    None; an empty class takes no part). Against `hybrid_nce`, the epsilon in the
    logarithm caps a sample's loss at -log(epsilon) ≈ 13.8 and scales its gradient by
    p_y / (p_y + epsilon): a sample whose own class has probability well under 1e-6
    stops being pulled. The exponentials are taken without subtracting the row
    maximum, as the code does (|s| <= 1 / temperature keeps them finite in fp32).
    """
    check_loss_inputs(x, classes, centroids, temperature=temperature, targets_name="classes")
    logits = (F.normalize(x.float(), dim=1) @ centroids.float().T) / float(temperature)
    exps = torch.exp(logits)
    if present is not None:
        if present.shape != (centroids.shape[0],):
            raise ValueError(
                f"present must be ({centroids.shape[0]},), one flag per class; found "
                f"{tuple(present.shape)}"
            )
        exps = exps * present.to(exps.device, exps.dtype)
    probs = exps / (exps.sum(dim=1, keepdim=True) + epsilon)
    return F.nll_loss(torch.log(probs + epsilon), classes.long())
