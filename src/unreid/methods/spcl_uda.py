"""SpCL + Cluster Contrast: domain adaptation through one unified cluster-level memory.

Cluster Contrast's appendix (§1.2) adopts SpCL's hybrid memory (Ge et al.,
NeurIPS 2020) at cluster level: rows [0, C_s) are the labelled source
classes, rows [C_s, C_s + C_t) this epoch's target clusters. Every batch is
half source, half target, and every sample, whatever its domain, takes the
ClusterNCE loss against all rows, so target clusters are told apart from
source identities as well as from each other.

Source rows start as the normalised class means of the source features. By
default (`spcl_uda.source_centroids=carry`, SpCL's behaviour) they are
extracted once and then only move with the momentum updates, carried from
epoch to epoch; `refresh` re-extracts the source set every epoch. Target rows
are rebuilt from the fresh clusters each epoch, as in Cluster Contrast.
Outliers leave the epoch (Cluster Contrast), where SpCL kept them as
one-image classes. Memory settings (update policy, momentum, temperature,
label smoothing) are the embedded `spcl_uda.memory` block.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from unreid.errors import check_choice
from unreid.memory.class_centroids import class_centroids
from unreid.methods.base import Batch, Method, MethodContext, register_method
from unreid.methods.cluster_contrast import ClusterContrast, ClusterMemoryConfig
from unreid.pseudo_labels import PseudoLabels

SOURCE_CENTROIDS = ("carry", "refresh")


@dataclass
class SpCLUDAConfig:
    """SpCL + Cluster Contrast domain adaptation."""

    # Source class rows: "carry" (extracted once, then moved by momentum updates
    # across epochs: SpCL) or "refresh" (re-extracted from the source set each epoch).
    source_centroids: str = "carry"
    # The unified cluster memory and its ClusterNCE loss (Cluster Contrast's settings).
    memory: ClusterMemoryConfig = field(default_factory=ClusterMemoryConfig)

    def __post_init__(self) -> None:
        check_choice("source_centroids", self.source_centroids, SOURCE_CENTROIDS)


class SpCLUDA(ClusterContrast):
    """Cluster Contrast whose memory rows are source classes, then target clusters."""

    name = "spcl_uda"

    def __init__(self, cfg: SpCLUDAConfig, feature_dim: int) -> None:
        super().__init__(cfg.memory, feature_dim)
        self.refresh = cfg.source_centroids == "refresh"
        self.register_buffer("num_source", torch.zeros((), dtype=torch.long))
        self._fresh_source: torch.Tensor | None = None

    def wants_source_features(self, epoch: int) -> bool:
        return self.refresh or int(self.num_source) == 0

    def start_source(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        self._fresh_source = class_centroids(features, labels)

    def start_epoch(
        self, epoch: int, features: torch.Tensor, labels: PseudoLabels, cameras: torch.Tensor
    ) -> None:
        if self._fresh_source is not None:
            source = self._fresh_source
            self._fresh_source = None
        elif int(self.num_source) > 0:
            source = self.memory.bank[: int(self.num_source)].clone()  # carried, momentum-moved
        else:
            raise RuntimeError("spcl_uda: no source centroids; the engine must call start_source")
        target = labels.centroids(features).to(source.device, source.dtype)
        self.memory.reset(torch.cat([source, target]))
        self.num_source.fill_(source.shape[0])

    def memory_rows(self, batch: Batch) -> torch.Tensor:
        """Source class ids as they are (the first `source_count` rows), target clusters after."""
        offset = torch.full_like(batch.targets, int(self.num_source))
        offset[: batch.source_count] = 0
        return batch.targets + offset


def _build(cfg: SpCLUDAConfig, ctx: MethodContext) -> Method:
    return SpCLUDA(cfg, ctx.feature_dim)


register_method("spcl_uda", SpCLUDAConfig, _build, needs_source=True)
