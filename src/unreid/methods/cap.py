"""CAP + Cluster Contrast: camera-aware proxies beside the cluster-level memory.

Cluster Contrast's appendix (§1.3) adopts its cluster-level memory into CAP
(Wang et al., AAAI 2021). Each epoch every cluster is split by camera into
proxies (memory/camera_proxy_memory.py). Three terms train the model:

- ClusterNCE against the cluster memory, exactly as Cluster Contrast
  (settings from the `cluster_contrast` section; `cap.cluster_weight` scales
  it, 0 gives CAP alone);
- the intra-camera loss: each sample against its own camera's proxies;
- from `cap.inter_start_epoch` on, the inter-camera loss: the cluster's
  proxies in other cameras as positives against the hardest proxies of other
  clusters (losses/camera_proxy_nce.py).

After the optimizer step the cluster memory takes its usual update and each
sample moves its own proxy with momentum `cap.momentum` (0.2, as CAP).
Batches are Cluster Contrast's P×K batches, whose partners already prefer
other cameras; CAP's own proxy-balanced sampler is not reproduced.
"""

from __future__ import annotations

import torch

from unreid.config import Config
from unreid.losses.camera_proxy_nce import inter_camera_nce, intra_camera_nce
from unreid.memory.camera_proxy_memory import CameraProxyMemory
from unreid.methods.base import Batch, Method, register_method
from unreid.methods.cluster_contrast import ClusterContrast
from unreid.pseudo_labels import PseudoLabels


class CameraAwareProxies(ClusterContrast):
    name = "cap"
    requires_cameras = True

    def __init__(self, cfg: Config, feature_dim: int) -> None:
        super().__init__(cfg, feature_dim)
        c = cfg.cap
        checks = {
            "temperature must be > 0": c.temperature > 0,
            "momentum must be in [0, 1)": 0.0 <= c.momentum < 1.0,
            "hard_negatives must be >= 1": c.hard_negatives >= 1,
            "inter_start_epoch must be >= 0": c.inter_start_epoch >= 0,
            "weights must be >= 0": min(c.intra_weight, c.inter_weight, c.cluster_weight) >= 0,
            "inter_positives must be 'other_cameras' or 'all'": c.inter_positives
            in ("other_cameras", "all"),
        }
        bad = [msg for msg, ok in checks.items() if not ok]
        if bad:
            raise ValueError("cap: " + "; ".join(bad))
        self.cap = c
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

    def describe(self) -> str:
        c = self.cap
        return (
            f"cap(tau={c.temperature}, proxy momentum={c.momentum}, inter from epoch "
            f"{c.inter_start_epoch} x{c.inter_weight}, {c.hard_negatives} hard negatives, "
            f"positives={c.inter_positives}, cluster_nce x{c.cluster_weight})"
        )


@register_method("cap")
def _build(cfg: Config, feature_dim: int) -> Method:
    return CameraAwareProxies(cfg, feature_dim)
