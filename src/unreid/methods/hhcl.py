"""HHCL (Hu et al.): hard-sample guided hybrid contrast learning.

Paper form (default, Eq. 2–8):
- cluster centroid contrast L_cls (Eq. 3) over a (C, D) centroid memory whose
  rows move towards the batch mean of their cluster with momentum (Eq. 4,
  `c ← α·c + (1−α)·c̄`, α = `momentum`, the old row's weight as in Cluster
  Contrast);
- hard instance contrast L_ins (Eq. 5–7) over a (C, K, D) instance memory:
  the own cluster's least similar instance is the positive, every other
  cluster's most similar instance its negative; batch features overwrite
  their cluster's slots (Eq. 8);
- L = μ·L_cls + (1−μ)·L_ins with μ = 0.5 (Eq. 2), any μ in [0, 1].

Released form (`hhcl.form=released`), what the authors' README numbers were
trained with (their `CMhybrid` memory): 2C centroid rows initialised from
cluster means, rows [0:C] updated with momentum by the least similar instance
of each cluster in the batch, rows [C:2C] by the batch mean; loss as written
in their code `0.5·(CE_hard + 0.5·CE_mean)` = 0.5·CE_hard + 0.25·CE_mean
(μ is not used: their weight flag is never passed through).
"""

from __future__ import annotations

import torch

from unreid.config import Config
from unreid.losses import cluster_nce, hard_instance_nce
from unreid.memory import HardClusterMemory, MeanClusterMemory
from unreid.memory.instance_memory import InstanceMemory
from unreid.methods.base import Batch, Method, register_method
from unreid.pseudo_labels import PseudoLabels

FORMS = ("paper", "released")


class HHCL(Method):
    name = "hhcl"

    def __init__(self, cfg: Config, feature_dim: int) -> None:
        super().__init__()
        h = cfg.hhcl
        if not 0.0 <= h.mu <= 1.0:
            raise ValueError(f"hhcl.mu must be in [0, 1], got {h.mu}")
        if h.form not in FORMS:
            raise ValueError(f"hhcl.form must be one of {FORMS}, got {h.form!r}")
        if min(h.temperature, h.instance_temperature) <= 0:
            raise ValueError("hhcl.temperature and hhcl.instance_temperature must be > 0")
        self.cfg = h
        self.centroids = MeanClusterMemory(feature_dim, h.momentum)
        if h.form == "paper":
            slots = h.slots or cfg.train.num_instances
            self.instances: InstanceMemory | None = InstanceMemory(feature_dim, slots)
            self.hard_centroids: HardClusterMemory | None = None
        else:
            self.instances = None
            self.hard_centroids = HardClusterMemory(feature_dim, h.momentum)

    def start_epoch(
        self, epoch: int, features: torch.Tensor, labels: PseudoLabels, cameras: torch.Tensor
    ) -> None:
        centroids = labels.centroids(features)
        self.centroids.reset(centroids)
        if self.hard_centroids is not None:
            self.hard_centroids.reset(centroids)
        if self.instances is not None:
            self.instances.reset(
                features, torch.tensor(labels.labels, dtype=torch.long, device=features.device)
            )

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        h, x, y = self.cfg, batch.features, batch.targets
        ls = h.label_smoothing
        if self.hard_centroids is not None:  # released form
            return {
                "hard_centroid_nce": 0.5
                * cluster_nce(x, y, self.hard_centroids.bank, h.temperature, ls),
                "mean_centroid_nce": 0.25
                * cluster_nce(x, y, self.centroids.bank, h.temperature, ls),
            }
        assert self.instances is not None
        losses = {}
        if h.mu > 0:
            losses["cluster_nce"] = h.mu * cluster_nce(x, y, self.centroids.bank, h.temperature, ls)
        if h.mu < 1:
            losses["hard_instance_nce"] = (1 - h.mu) * hard_instance_nce(
                x, y, self.instances.bank, h.instance_temperature, ls
            )
        return losses

    @torch.no_grad()
    def update_memories(self, batch: Batch) -> None:
        self.centroids.update(batch.features, batch.targets)
        if self.hard_centroids is not None:
            self.hard_centroids.update(batch.features, batch.targets)
        if self.instances is not None:
            self.instances.update(batch.features, batch.targets)

    def describe(self) -> str:
        return f"hhcl(form={self.cfg.form}, mu={self.cfg.mu})"


@register_method("hhcl")
def _build(cfg: Config, feature_dim: int) -> Method:
    return HHCL(cfg, feature_dim)
