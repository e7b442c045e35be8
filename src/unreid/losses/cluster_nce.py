"""ClusterNCE: softmax cross-entropy of an embedding against every cluster row."""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor

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
    if not isinstance(x, Tensor) or x.dim() != 2:
        raise ValueError(f"x must be a 2-D tensor (B, D), found {_shape(x)}")
    if not isinstance(bank, Tensor) or bank.dim() != 2 or bank.shape[1] != x.shape[1]:
        raise ValueError(f"bank must have shape (C, {x.shape[1]}) to match x, found {_shape(bank)}")
    if bank.shape[0] == 0:
        raise ValueError("bank must have at least one row, found 0")
    if not isinstance(targets, Tensor) or targets.dim() != 1 or targets.shape[0] != x.shape[0]:
        raise ValueError(f"targets must have shape ({x.shape[0]},), found {_shape(targets)}")
    if targets.is_floating_point() or targets.is_complex():
        raise TypeError(f"targets must be an integer tensor, found {targets.dtype}")
    if x.shape[0] == 0:
        raise ValueError("x must hold at least one embedding, found an empty batch")
    num_clusters = bank.shape[0]
    if targets.min() < 0 or targets.max() >= num_clusters:
        raise ValueError(
            f"targets must be cluster ids in [0, {num_clusters}), found values in "
            f"[{int(targets.min())}, {int(targets.max())}]"
        )
    temperature = float(temperature)
    if not (temperature > 0 and math.isfinite(temperature)):
        raise ValueError(f"temperature must be a finite number > 0, found {temperature}")
    label_smoothing = float(label_smoothing)
    if not (0.0 <= label_smoothing <= 1.0):
        raise ValueError(f"label_smoothing must be in [0, 1], found {label_smoothing}")

    logits = F.normalize(x, dim=1) @ bank.to(x.dtype).T / temperature
    return F.cross_entropy(logits, targets.long(), label_smoothing=label_smoothing)


def _shape(value: object) -> str:
    return str(tuple(value.shape)) if isinstance(value, Tensor) else type(value).__name__
