"""Seconds per stage of an epoch (extract, cluster, memories, train, evaluate) for log.jsonl.

Where the time goes decides what to speed up (a faster kNN is worth nothing if the
epoch is spent in the loader), and a GPU's kernels run behind the Python that
launched them: on CUDA each stage ends with a synchronize, so a stage is charged
its own kernels, not the next one's wait.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch


class StageClock:
    """Wall seconds per named stage, summed over the stage's uses within one epoch."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            took = time.perf_counter() - started
            self.seconds[name] = self.seconds.get(name, 0.0) + took

    def record(self) -> dict[str, float]:
        """The epoch's figures, rounded for the log (ms: a tiny run's stages are not 0)."""
        return {name: round(s, 3) for name, s in self.seconds.items()}
