"""Cluster Contrast (Dai et al.): ClusterNCE against a cluster-level memory.

Each epoch the memory is rebuilt from the L2-normalised means of the clusters;
after every optimizer step the batch's features update their clusters' rows
with the configured policy (every instance in order with momentum, or only the
least similar instance of each cluster). The loss reads the bank as it was
before the step's update, exactly as the reference's in-backward update does.

`ClusterMemoryConfig` is Cluster Contrast's section, and the block that the
methods built on its memory (CAP + CC, SpCL + CC) embed as their `memory`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from unreid.errors import check_choice, check_range
from unreid.losses import cluster_nce
from unreid.memory import build_cluster_memory
from unreid.methods.base import Batch, Method, MethodContext, register_method
from unreid.pseudo_labels import PseudoLabels

MEMORY_UPDATES = ("momentum", "hard")


@dataclass
class ClusterMemoryConfig:
    # "momentum" (every instance, in batch order) or "hard" (least similar instance per cluster).
    memory_update: str = "momentum"
    # Weight of the OLD bank row: M <- m*M + (1-m)*x (reference convention, m = 0.1).
    momentum: float = 0.1
    temperature: float = 0.05
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        check_choice("memory_update", self.memory_update, MEMORY_UPDATES)
        check_range("momentum", self.momentum, 0.0, 1.0, high_open=True)
        check_range("temperature", self.temperature, 0.0, low_open=True)
        check_range("label_smoothing", self.label_smoothing, 0.0, 1.0)


class ClusterContrast(Method):
    name = "cluster_contrast"

    def __init__(self, cfg: ClusterMemoryConfig, feature_dim: int) -> None:
        super().__init__()
        self.temperature = cfg.temperature
        self.label_smoothing = cfg.label_smoothing
        self.memory = build_cluster_memory(cfg.memory_update, feature_dim, cfg.momentum)

    def start_epoch(
        self, epoch: int, features: torch.Tensor, labels: PseudoLabels, cameras: torch.Tensor
    ) -> None:
        self.memory.reset(labels.centroids(features).to(self.memory.bank.device))

    def memory_rows(self, batch: Batch) -> torch.Tensor:
        """The memory row of each batch sample: its cluster (a subclass may map it)."""
        return batch.targets

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        loss = cluster_nce(
            batch.features,
            self.memory_rows(batch),
            self.memory.bank,
            temperature=self.temperature,
            label_smoothing=self.label_smoothing,
        )
        return {"cluster_nce": loss}

    @torch.no_grad()
    def update_memories(self, batch: Batch) -> None:
        self.memory.update(batch.features.detach(), self.memory_rows(batch))


def _build(cfg: ClusterMemoryConfig, ctx: MethodContext) -> Method:
    return ClusterContrast(cfg, ctx.feature_dim)


register_method("cluster_contrast", ClusterMemoryConfig, _build)
