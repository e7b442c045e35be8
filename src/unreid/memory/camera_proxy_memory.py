"""Camera-aware proxies (CAP): each cluster split by camera, one memory row per part.

A cluster's images from one camera share lighting, background and viewpoint, so
their mean sits apart from the same person's mean in another camera. CAP keeps
one row per (cluster, camera) pair that has images, so a loss can first learn
identities within a camera (against that camera's proxies only) and then pull
the camera-specific parts of one cluster together.

Rows are ordered by camera, then cluster id: the proxies of one camera are one
contiguous block, which is what the intra-camera loss softmaxes over. The bank
update is the same per-instance momentum rule as Cluster Contrast's memory
(`momentum` weighs the old row), applied to the sample's own proxy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unreid.memory.policies import MomentumClusterMemory

__all__ = ["CameraProxyMemory"]


class CameraProxyMemory(nn.Module):
    """Proxy bank plus the tables mapping (cluster, camera) to a row and back.

    Buffers (saved with the method, resized on load like the cluster bank):
    `bank` (P, D) via an inner momentum memory, `proxy_cluster` (P,),
    `proxy_camera` (P,), and `lookup` (C, cameras) holding the row of each pair
    or -1 where a cluster has no image in a camera.
    """

    proxy_cluster: Tensor
    proxy_camera: Tensor
    lookup: Tensor

    def __init__(self, num_features: int, momentum: float = 0.2) -> None:
        super().__init__()
        self.rows = MomentumClusterMemory(num_features, momentum)
        self.register_buffer("proxy_cluster", torch.zeros(0, dtype=torch.long))
        self.register_buffer("proxy_camera", torch.zeros(0, dtype=torch.long))
        self.register_buffer("lookup", torch.zeros(0, 0, dtype=torch.long))

    @property
    def bank(self) -> Tensor:
        return self.rows.bank

    @property
    def num_proxies(self) -> int:
        return self.rows.num_clusters

    @torch.no_grad()
    def reset(self, features: Tensor, labels: Tensor, cameras: Tensor) -> None:
        """Build the proxies from this epoch's features (N, D), labels (N,; -1 = outlier), cameras.

        Each proxy starts at the L2-normalised mean of its cluster's images in
        its camera; outliers make no proxy.
        """
        if features.dim() != 2 or labels.shape != (features.shape[0],):
            raise ValueError(
                f"features must be (N, D) and labels (N,), found {tuple(features.shape)} and "
                f"{tuple(labels.shape)}"
            )
        if cameras.shape != labels.shape:
            raise ValueError(
                f"cameras must have shape {tuple(labels.shape)}, found {tuple(cameras.shape)}"
            )
        device = features.device
        labels = labels.to(device=device, dtype=torch.long)
        cameras = cameras.to(device=device, dtype=torch.long)
        keep = labels >= 0
        if not bool(keep.any()):
            raise ValueError("no clustered image: every label is -1")
        if bool((cameras[keep] < 0).any()):
            raise ValueError("camera ids must be >= 0 for camera-aware proxies")
        num_clusters = int(labels.max()) + 1
        num_cameras = int(cameras[keep].max()) + 1
        pair = cameras[keep] * num_clusters + labels[keep]  # camera-major order
        pairs, slot = torch.unique(pair, return_inverse=True)  # sorted: camera, then cluster
        sums = torch.zeros(len(pairs), features.shape[1], dtype=features.dtype, device=device)
        sums.index_add_(0, slot, features[keep])
        self.rows.reset(F.normalize(sums, dim=1))
        proxy_camera, proxy_cluster = pairs // num_clusters, pairs % num_clusters
        lookup = torch.full((num_clusters, num_cameras), -1, dtype=torch.long, device=device)
        lookup[proxy_cluster, proxy_camera] = torch.arange(len(pairs), device=device)
        bank_device = self.bank.device
        self.proxy_cluster = proxy_cluster.to(bank_device)
        self.proxy_camera = proxy_camera.to(bank_device)
        self.lookup = lookup.to(bank_device)

    def proxy_of(self, targets: Tensor, cameras: Tensor) -> Tensor:
        """Row of each sample's own proxy; an error if a pair has none (not from this epoch)."""
        targets = targets.to(self.lookup.device, torch.long)
        cameras = cameras.to(self.lookup.device, torch.long)
        c, k = self.lookup.shape
        bad = (targets < 0) | (targets >= c) | (cameras < 0) | (cameras >= k)
        if bool(bad.any()):
            raise ValueError(
                f"(cluster, camera) pairs outside this epoch's proxies ({c} clusters, "
                f"{k} cameras): e.g. ({int(targets[bad][0])}, {int(cameras[bad][0])})"
            )
        rows = self.lookup[targets, cameras]
        if bool((rows < 0).any()):
            i = int((rows < 0).nonzero()[0])
            raise ValueError(
                f"cluster {int(targets[i])} has no image in camera {int(cameras[i])} this epoch"
            )
        return rows

    @torch.no_grad()
    def update(self, x: Tensor, targets: Tensor, cameras: Tensor) -> None:
        """Per instance, in batch order, move its own proxy towards it (then renormalise)."""
        self.rows.update(x, self.proxy_of(targets, cameras).to(self.bank.device))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, *args):
        # Proxy count and table size change every epoch: adopt the saved shapes.
        for name in ("proxy_cluster", "proxy_camera", "lookup"):
            saved = state_dict.get(prefix + name)
            if isinstance(saved, Tensor):
                setattr(self, name, torch.empty_like(saved, device=getattr(self, name).device))
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, *args)
