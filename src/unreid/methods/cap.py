"""CAP + Cluster Contrast: camera-aware proxies beside the cluster-level memory.

Cluster Contrast's appendix (§1.3) adopts its cluster-level memory into CAP
(Wang et al., AAAI 2021). Each epoch every cluster is split by camera into
proxies (memory/camera_proxy_memory.py). Three terms train the model:

- ClusterNCE against the cluster memory, exactly as Cluster Contrast
  (settings in the embedded `cap.memory` block; `cap.cluster_weight` scales
  it, 0 gives CAP alone);
- the intra-camera loss: each sample against its own camera's proxies;
- from `cap.inter_start_epoch` on, the inter-camera loss: the cluster's
  proxies in other cameras as positives against the hardest proxies of other
  clusters (losses/camera_proxy_nce.py).

After the optimizer step the cluster memory takes its usual update and each
sample moves its own proxy with momentum `cap.momentum` (0.2, as CAP).
Batches are Cluster Contrast's P×K batches by default, whose partners already
prefer other cameras; CAP's own proxy-balanced sampler (K images per
(cluster, camera) proxy) is `train.sampler=proxy_balanced`, which CAP alone's
presets use with its warm-up and one-pass epochs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from unreid.errors import check_choice, check_range
from unreid.losses.camera_proxy_nce import inter_camera_nce, intra_camera_nce
from unreid.memory.camera_proxy_memory import CameraProxyMemory
from unreid.methods.base import Batch, Method, MethodContext, register_method
from unreid.methods.cluster_contrast import ClusterContrast, ClusterMemoryConfig
from unreid.pseudo_labels import PseudoLabels

INTER_POSITIVES = ("other_cameras", "all")


@dataclass
class CAPConfig:
    """Camera-aware proxies (Wang et al., AAAI 2021) on Cluster Contrast."""

    temperature: float = 0.07
    # Proxy memory momentum (weight of the OLD row, as everywhere here).
    momentum: float = 0.2
    intra_weight: float = 1.0
    inter_weight: float = 0.5
    # 0-based epoch from which the inter-camera loss is on (reference: epoch >= 5).
    inter_start_epoch: int = 5
    hard_negatives: int = 50
    # Inter-camera positives: "other_cameras" (the cluster's proxies in cameras
    # other than the sample's) or "all" (every proxy of the cluster, the sample's
    # own camera included: the reference code).
    inter_positives: str = "other_cameras"
    # Weight of the cluster-level ClusterNCE term; 0 = CAP alone (no cluster memory).
    cluster_weight: float = 1.0
    # The cluster-level memory and its ClusterNCE term (Cluster Contrast's settings).
    memory: ClusterMemoryConfig = field(default_factory=ClusterMemoryConfig)

    def __post_init__(self) -> None:
        check_range("temperature", self.temperature, 0.0, low_open=True)
        check_range("momentum", self.momentum, 0.0, 1.0, high_open=True)
        check_range("hard_negatives", self.hard_negatives, 1)
        check_range("inter_start_epoch", self.inter_start_epoch, 0)
        for key in ("intra_weight", "inter_weight", "cluster_weight"):
            check_range(key, getattr(self, key), 0.0)
        check_choice("inter_positives", self.inter_positives, INTER_POSITIVES)

    def ignored(self) -> dict[str, str]:
        out = {}
        if self.inter_weight == 0:
            why = "cap.inter_weight=0"
            out.update({k: why for k in ("inter_start_epoch", "hard_negatives", "inter_positives")})
        if self.cluster_weight == 0:
            out["memory"] = "cap.cluster_weight=0 (CAP alone: no cluster memory)"
        return out


class CameraAwareProxies(ClusterContrast):
    name = "cap"
    requires_cameras = True

    def __init__(self, cfg: CAPConfig, feature_dim: int) -> None:
        super().__init__(cfg.memory, feature_dim)
        c = self.cap = cfg
        self.proxies = CameraProxyMemory(feature_dim, c.momentum)
        self.epoch = 0

    def start_epoch(
        self, epoch: int, features: torch.Tensor, labels: PseudoLabels, cameras: torch.Tensor
    ) -> None:
        super().start_epoch(epoch, features, labels, cameras)
        self.proxies.reset(features, torch.tensor(labels.labels), cameras.to(features.device))
        self.epoch = epoch

    @property
    def inter_active(self) -> bool:
        return self.epoch >= self.cap.inter_start_epoch and self.cap.inter_weight > 0

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        c = self.cap
        out: dict[str, torch.Tensor] = {}
        if c.cluster_weight > 0:
            out["cluster_nce"] = c.cluster_weight * super().losses(batch)["cluster_nce"]
        bank = self.proxies.bank
        rows = self.proxies.proxy_of(batch.targets, batch.cameras)
        out["intra_camera"] = c.intra_weight * intra_camera_nce(
            batch.features, rows, batch.cameras, bank, self.proxies.proxy_camera, c.temperature
        )
        if self.inter_active:
            out["inter_camera"] = c.inter_weight * inter_camera_nce(
                batch.features,
                batch.targets,
                batch.cameras,
                bank,
                self.proxies.proxy_cluster,
                self.proxies.proxy_camera,
                temperature=c.temperature,
                hard_negatives=c.hard_negatives,
                positives=c.inter_positives,
            )
        return out

    @torch.no_grad()
    def update_memories(self, batch: Batch) -> None:
        if self.cap.cluster_weight > 0:
            super().update_memories(batch)
        self.proxies.update(batch.features, batch.targets, batch.cameras)


def _build(cfg: CAPConfig, ctx: MethodContext) -> Method:
    return CameraAwareProxies(cfg, ctx.feature_dim)


register_method("cap", CAPConfig, _build)
