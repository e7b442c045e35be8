"""Shared by the memory tests: float64 unit vectors and a memory reset to a given bank."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from unreid.memory import ClusterMemory


def unit(*shape: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g, dtype=torch.float64), dim=1)


def memory_at(cls: type[ClusterMemory], bank: torch.Tensor, momentum: float) -> ClusterMemory:
    mem = cls(bank.shape[1], momentum).double()
    mem.reset(bank)
    return mem
