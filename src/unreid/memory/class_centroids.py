"""Normalised class means of labelled features: the source rows of domain-adaptation memories."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["class_centroids"]


def class_centroids(features: Tensor, labels: Tensor) -> Tensor:
    """(C, D) unit mean of each class 0..C-1 of `features` (N, D); every class must have images."""
    labels = torch.as_tensor(labels, device=features.device, dtype=torch.long)
    if labels.shape != (features.shape[0],) or labels.numel() == 0 or labels.min() < 0:
        raise ValueError("source labels must be (N_s,) class ids >= 0, one per feature row")
    num_classes = int(labels.max()) + 1
    sums = torch.zeros(num_classes, features.shape[1], dtype=features.dtype, device=features.device)
    sums.index_add_(0, labels, features)
    if bool((sums.norm(dim=1) == 0).any()):
        raise ValueError("source class ids must be contiguous 0..C_s-1 (a class has no image)")
    return F.normalize(sums, dim=1)
