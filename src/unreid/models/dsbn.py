"""Domain-specific BatchNorm (SpCL's DSBN): one set of BN statistics per domain.

Source and target images differ in colour, lighting and background; sharing
BatchNorm statistics between them mixes two distributions into one and hurts
the target. DSBN keeps two copies of every BN layer. A mixed batch is laid out
source rows first (the engine builds it so); each layer normalises its first
`source_rows` rows with the source copy and the rest with the target copy.
Outside `source_rows(...)` everything is target, which is what evaluation and
target feature extraction want.

SpCL splits the batch at its midpoint and always evaluates with the target
copy, even when it extracts source features; here the split is explicit and
source features are extracted with the source statistics.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

__all__ = ["DomainSpecificBatchNorm", "convert_to_dsbn", "source_rows"]

ALL_ROWS = sys.maxsize


class DomainSpecificBatchNorm(nn.Module):
    """Two copies of a BatchNorm layer; rows [0, source_rows) take the source one."""

    def __init__(self, bn: nn.modules.batchnorm._BatchNorm) -> None:
        super().__init__()
        self.source = copy.deepcopy(bn)
        self.target = copy.deepcopy(bn)
        self.source_rows = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = min(self.source_rows, x.shape[0])
        if n == 0:
            return self.target(x)
        if n == x.shape[0]:
            return self.source(x)
        return torch.cat([self.source(x[:n]), self.target(x[n:])])


def convert_to_dsbn(model: nn.Module) -> int:
    """Replace every BatchNorm1d/2d in `model` by a DSBN pair (both copies of its
    current weights and statistics); returns how many were replaced."""
    count = 0
    for name, child in list(model.named_children()):
        if isinstance(child, (nn.BatchNorm1d, nn.BatchNorm2d)):
            setattr(model, name, DomainSpecificBatchNorm(child))
            count += 1
        else:
            count += convert_to_dsbn(child)
    return count


@contextmanager
def source_rows(model: nn.Module, rows: int) -> Iterator[None]:
    """Within the block, DSBN layers treat the first `rows` rows as source (`ALL_ROWS`: all).

    A model without DSBN layers is unaffected, so callers need not check.
    """
    layers = [m for m in model.modules() if isinstance(m, DomainSpecificBatchNorm)]
    previous = [m.source_rows for m in layers]
    for m in layers:
        m.source_rows = rows
    try:
        yield
    finally:
        for m, p in zip(layers, previous, strict=True):
            m.source_rows = p
