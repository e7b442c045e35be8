"""Cluster Contrast (Dai et al.): ClusterNCE against a cluster-level memory.

Each epoch the memory is rebuilt from the L2-normalised means of the clusters;
after every optimizer step the batch's features update their clusters' rows
with the configured policy (every instance in order with momentum, or only the
least similar instance of each cluster). The loss reads the bank as it was
before the step's update, exactly as the reference's in-backward update does.
"""

from __future__ import annotations

import torch

from unreid.config import Config
from unreid.losses import cluster_nce
from unreid.memory import build_cluster_memory
from unreid.methods.base import Batch, Method, register_method
from unreid.pseudo_labels import PseudoLabels


class ClusterContrast(Method):
    name = "cluster_contrast"

    def __init__(self, cfg: Config, feature_dim: int) -> None:
        super().__init__()
        c = cfg.cluster_contrast
        if c.temperature <= 0:
            raise ValueError(f"cluster_contrast.temperature must be > 0, got {c.temperature}")
        if not 0.0 <= c.momentum < 1.0:
            raise ValueError(f"cluster_contrast.momentum must be in [0, 1), got {c.momentum}")
        self.temperature = c.temperature
        self.label_smoothing = c.label_smoothing
        self.memory = build_cluster_memory(c.memory_update, feature_dim, c.momentum)
        self.policy = c.memory_update

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

    def describe(self) -> str:
        return f"cluster_contrast(update={self.policy}, tau={self.temperature})"


@register_method("cluster_contrast")
def _build(cfg: Config, feature_dim: int) -> Method:
    return ClusterContrast(cfg, feature_dim)
