"""Global pooling heads, chosen by name (`model.pooling`).

GeM (generalized mean, Radenović et al.) with a trainable exponent is the
reference code's default: p = 1 is average pooling and p → ∞ tends to max
pooling. From random init it matters a great deal (REFERENCE_NOTES: 31 vs 17
mAP on a small synthetic set), so the demo uses it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


class GeM(nn.Module):
    def __init__(self, p: float = 3.0, eps: float = 1e-6, trainable: bool = True) -> None:
        super().__init__()
        if p <= 0:
            raise ValueError(f"GeM exponent must be > 0, got {p}")
        self.p = nn.Parameter(torch.tensor(float(p)), requires_grad=trainable)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.adaptive_avg_pool2d(x.clamp(min=self.eps).pow(self.p), 1)
        return pooled.pow(1.0 / self.p)

    def extra_repr(self) -> str:
        return f"p={float(self.p):.3f}, eps={self.eps}"


POOLINGS: dict[str, Callable[[], nn.Module]] = {
    "avg": lambda: nn.AdaptiveAvgPool2d(1),
    "max": lambda: nn.AdaptiveMaxPool2d(1),
    "gem": lambda: GeM(3.0),
}


def build_pooling(name: str) -> nn.Module:
    if name not in POOLINGS:
        raise ValueError(f"model.pooling={name!r}; available: {', '.join(sorted(POOLINGS))}")
    return POOLINGS[name]()
