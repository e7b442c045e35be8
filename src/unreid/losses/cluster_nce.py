"""ClusterNCE: softmax cross-entropy of an embedding against every cluster row."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from unreid.losses.checks import check_loss_inputs

__all__ = ["cluster_nce"]


def cluster_nce(
    x: Tensor,
    targets: Tensor,
    bank: Tensor,
    temperature: float = 0.05,
    label_smoothing: float = 0.0,
) -> Tensor:
    """Mean cross-entropy of `normalize(x) @ bank.T / temperature` against `targets`.

    `x` is normalised here because the reference normalises inside its memory's
    forward; the gradient reaching the model is therefore projected off `x`'s
    own direction. The bank is used as given: pass a memory's buffer (no
    gradient) to reproduce Cluster Contrast.
    """
    check_loss_inputs(x, targets, bank, temperature=temperature, label_smoothing=label_smoothing)
    logits = F.normalize(x, dim=1) @ bank.to(x.dtype).T / float(temperature)
    return F.cross_entropy(logits, targets.long(), label_smoothing=float(label_smoothing))
