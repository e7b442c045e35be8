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

from dataclasses import dataclass

import torch

from unreid.errors import check_choice, check_range
from unreid.losses import cluster_nce, hard_instance_nce
from unreid.memory import HardClusterMemory, MeanClusterMemory
from unreid.memory.instance_memory import InstanceMemory
from unreid.methods.base import Batch, Method, MethodContext, register_method
from unreid.pseudo_labels import PseudoLabels

FORMS = ("paper", "released")


@dataclass
class HHCLConfig:
    # L = mu * L_cls + (1 - mu) * L_ins (Eq. 2); any mu in [0, 1].
    mu: float = 0.5
    # "paper": centroid memory (batch-mean update, Eq. 4) + (C, K, D) hard instance memory.
    # "released": the authors' code (CMhybrid): hard + mean centroids, 0.5/0.25 weights.
    form: str = "paper"
    momentum: float = 0.1
    temperature: float = 0.05
    instance_temperature: float = 0.05
    slots: int = 0  # instance slots per cluster; 0 = train.num_instances
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        check_range("mu", self.mu, 0.0, 1.0)
        check_choice("form", self.form, FORMS)
        check_range("momentum", self.momentum, 0.0, 1.0)
        check_range("temperature", self.temperature, 0.0, low_open=True)
        check_range("instance_temperature", self.instance_temperature, 0.0, low_open=True)
        check_range("slots", self.slots, 0)
        check_range("label_smoothing", self.label_smoothing, 0.0, 1.0)

    def ignored(self) -> dict[str, str]:
        if self.form == "released":  # fixed 0.5 / 0.25 weights, no instance memory
            return {k: "hhcl.form=released" for k in ("mu", "instance_temperature", "slots")}
        return {}


class HHCL(Method):
    name = "hhcl"

    def __init__(self, cfg: HHCLConfig, feature_dim: int, num_instances: int) -> None:
        super().__init__()
        h = self.cfg = cfg
        self.centroids = MeanClusterMemory(feature_dim, h.momentum)
        if h.form == "paper":
            slots = h.slots or num_instances
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


def _build(cfg: HHCLConfig, ctx: MethodContext) -> Method:
    return HHCL(cfg, ctx.feature_dim, ctx.num_instances)


register_method("hhcl", HHCLConfig, _build)
