"""Global pooling heads, chosen by name (`model.pooling`).

GeM (generalized mean, Radenović et al.) with a trainable exponent is the
reference code's default: p = 1 is average pooling and p → ∞ tends to max
pooling. From random init it matters a great deal (REFERENCE_NOTES: 31 vs 17
mAP on a small synthetic set), so the demo uses it.

Each entry is a factory rather than a module, so every model gets its own
pooling (GeM's exponent is a parameter and must not be shared).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from unreid.registry import Registry

__all__ = ["POOLINGS", "GeM", "build_pooling", "list_poolings"]


class GeM(nn.Module):
    """Generalized-mean pooling; the exponent is learnt unless `trainable=False`."""

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


POOLINGS: Registry[Callable[[], nn.Module]] = Registry("pooling")


@POOLINGS.register("avg")
def avg_pooling() -> nn.Module:
    return nn.AdaptiveAvgPool2d(1)


@POOLINGS.register("max")
def max_pooling() -> nn.Module:
    return nn.AdaptiveMaxPool2d(1)


@POOLINGS.register("gem")
def gem_pooling() -> nn.Module:
    return GeM(3.0)


def list_poolings() -> list[str]:
    """The names `model.pooling` accepts."""
    return POOLINGS.names()


def build_pooling(name: str) -> nn.Module:
    """A fresh (B, C, H, W) -> (B, C, 1, 1) pooling; an unknown name lists the valid ones."""
    return POOLINGS.get(name)()
