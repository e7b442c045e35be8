"""HHCL's hard instance contrastive loss (Eq. 5–7) as pure functions.

For each query q and each cluster i the memory holds K instance features. The
logit of the query's own cluster uses its LEAST similar instance (hard
positive, Eq. 6); every other cluster uses its MOST similar instance (hard
negative, Eq. 7). The gradient reaches q through the selected instances only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from unreid.losses.checks import check_loss_inputs

__all__ = ["hard_instance_logits", "hard_instance_nce"]


def hard_instance_logits(x: Tensor, targets: Tensor, bank: Tensor) -> Tensor:
    """(B, C) similarities: min over the own cluster's slots, max over every other cluster's."""
    check_loss_inputs(x, targets, bank, bank_ndim=3)
    targets = targets.long()
    sims = torch.einsum("bd,ckd->bck", x, bank.to(x.dtype))
    hardest_negative = sims.amax(dim=2)
    hardest_positive = sims.gather(1, targets.view(-1, 1, 1).expand(-1, 1, sims.shape[2])).amin(
        dim=2
    )
    return hardest_negative.scatter(1, targets.view(-1, 1), hardest_positive)


def hard_instance_nce(
    x: Tensor,
    targets: Tensor,
    bank: Tensor,
    temperature: float = 0.05,
    label_smoothing: float = 0.0,
) -> Tensor:
    """Cross-entropy over the hard logits of `normalize(x)` (Eq. 5)."""
    check_loss_inputs(
        x,
        targets,
        bank,
        bank_ndim=3,
        temperature=temperature,
        label_smoothing=label_smoothing,
    )
    logits = hard_instance_logits(F.normalize(x, dim=1), targets, bank) / temperature
    return F.cross_entropy(logits, targets.long(), label_smoothing=label_smoothing)
