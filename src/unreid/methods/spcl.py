"""SpCL (Ge et al., NeurIPS 2020): self-paced contrastive learning with a hybrid memory.

Unsupervised alone, or adapting from a labelled source domain when the run
names one (`data.source`); Table 1 of Cluster Contrast's appendix quotes both
("SpCL" and its "SPCL" domain-adaptation rows).

- The memory (memory/hybrid_memory.py) stores one feature per target image
  (plus source class centroids when adapting); a cluster is the mean of its
  members' stored features, an image in no reliable cluster a class of its own.
  The stored features are what is clustered every epoch (`spcl.cluster_on=
  memory`, SpCL's paper and code: the model is extracted only once, before the
  first epoch; `extracted` clusters the freshly extracted features instead and
  writes them into the memory's image rows, every epoch).
- Self-paced labels (pseudo_labels/self_paced.py): the run's DBSCAN labels are
  compared with DBSCAN at eps ± `spcl.eps_gap` on the same Jaccard distance,
  and unreliable clusters (not independent, or members not compact) go back
  to being one-image classes.
- The unified loss (losses/hybrid_nce.py): every sample against all source
  classes, target clusters and un-clustered images at τ 0.05. Adapting, the
  source half and the target half are two terms, each a mean over its half,
  summed as in SpCL's trainer.
- After each step every sample moves its own row (momentum 0.2, SpCL).

Departures, on purpose: the engine's P×K sampler gives an un-clustered image
K augmented copies in a batch where SpCL's sampler gives it one; SpCL's
masked softmax adds 1e-6 inside its sums and logarithm, a plain cross-entropy
(the paper's Eq. 2) is used here by default, the code's form with
`spcl.loss=official`. The paper text is not in this repository; the criterion's
thresholds (α keeping 90% of clusters at the first epoch, fixed afterwards;
β = the best compactness within each cluster) are read from SpCL's code.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from unreid.errors import check_choice, check_range
from unreid.losses.hybrid_nce import hybrid_nce, hybrid_nce_official
from unreid.memory.class_centroids import class_centroids
from unreid.memory.hybrid_memory import HybridMemory
from unreid.methods.base import Batch, Method, MethodContext, register_method
from unreid.pseudo_labels import PseudoLabels
from unreid.pseudo_labels.clusterers import dbscan_at_radii
from unreid.pseudo_labels.self_paced import reliable_clusters, singletons

log = logging.getLogger("unreid")

CLUSTER_ON = ("memory", "extracted")
LOSSES = ("cross_entropy", "official")
INDEPENDENCE_RULES = ("first_epoch", "every_epoch")


@dataclass
class SpCLConfig:
    """SpCL's hybrid memory, self-paced criterion and unified loss (its published values)."""

    temperature: float = 0.05
    momentum: float = 0.2  # weight of the OLD row
    # Break unreliable clusters back into one-image classes (SpCL's self-paced step).
    self_paced: bool = True
    eps_gap: float = 0.02  # the looser / tighter DBSCAN radii: cluster.eps ± eps_gap
    # Share of the multi-image clusters the independence threshold keeps when it is set:
    # at the first self-paced epoch, then fixed ("first_epoch", SpCL's code), or again at
    # every epoch ("every_epoch": α follows the clusters as the features change)
    independence_keep: float = 0.9
    independence_rule: str = "first_epoch"
    # What is clustered: the "memory"'s stored features (SpCL), or the "extracted" ones,
    # which then also replace the memory's image rows every epoch.
    cluster_on: str = "memory"
    # The unified loss: "cross_entropy" (the paper's Eq. 2), or "official", the released
    # code's masked softmax with 1e-6 in its sum and its logarithm (hybrid_nce_official)
    loss: str = "cross_entropy"

    def __post_init__(self) -> None:
        check_range("temperature", self.temperature, 0.0, low_open=True)
        check_range("momentum", self.momentum, 0.0, 1.0, high_open=True)
        check_range("eps_gap", self.eps_gap, 0.0, low_open=True)
        check_range("independence_keep", self.independence_keep, 0.0, 1.0, low_open=True)
        check_choice("cluster_on", self.cluster_on, CLUSTER_ON)
        check_choice("loss", self.loss, LOSSES)
        check_choice("independence_rule", self.independence_rule, INDEPENDENCE_RULES)

    def ignored(self) -> dict[str, str]:
        if self.self_paced:
            return {}
        keys = ("eps_gap", "independence_keep", "independence_rule")
        return {k: "spcl.self_paced=false" for k in keys}

    def run_checks(self, cfg: Any) -> list[tuple[str, bool, str]]:
        """What the self-paced step needs from the rest of the run (checked at load time)."""
        if not self.self_paced:
            return []
        c = cfg.cluster
        return [
            (
                "cluster.method",
                c.method == "dbscan" and not cfg.train.ground_truth,
                "spcl.self_paced=true re-clusters with DBSCAN at cluster.eps ± spcl.eps_gap: "
                "needs cluster.method=dbscan and train.ground_truth=false "
                "(or set spcl.self_paced=false)",
            ),
            (
                "cluster.eps",
                c.eps - self.eps_gap > 0
                and (c.jaccard_impl == "dense" or c.eps + self.eps_gap < 1),
                f"needs cluster.eps - spcl.eps_gap > 0 and, on the sparse Jaccard path, "
                f"cluster.eps + spcl.eps_gap < 1 (spcl.eps_gap={self.eps_gap})",
            ),
        ]


class SpCL(Method):
    name = "spcl"

    def __init__(self, cfg: SpCLConfig, ctx: MethodContext) -> None:
        super().__init__()
        self.cfg, self.cluster_cfg, self.adapting = cfg, ctx.cluster, ctx.adapting
        self.memory = HybridMemory(ctx.feature_dim, cfg.momentum)
        # α of the independence criterion, set at the first self-paced epoch (saved; under
        # independence_rule=every_epoch, the latest epoch's)
        self.register_buffer("alpha", torch.tensor(math.nan, dtype=torch.float64))
        # source samples ahead of the target ones in batch indexes (0 alone; saved)
        self.register_buffer("num_source_samples", torch.zeros((), dtype=torch.long))
        self._fresh_source: torch.Tensor | None = None  # class centroids, until the first epoch
        self._clustered: torch.Tensor | None = None
        self._labels: np.ndarray | None = None

    @property
    def started(self) -> bool:
        return self.memory.bank.shape[0] > 0

    def clustering_features(
        self, epoch: int, features: torch.Tensor, samples: list[Any]
    ) -> torch.Tensor:
        if self.started and self.cfg.cluster_on == "memory":
            features = self.memory.bank[int(self.memory.num_source) :].to(features.device)
        self._clustered = features
        return features

    def wants_source_features(self, epoch: int) -> bool:
        return self.adapting and not self.started  # extracted once, then moved (SpCL)

    def start_source(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        self._fresh_source = class_centroids(features, labels)
        self.num_source_samples.fill_(features.shape[0])

    def start_epoch(
        self, epoch: int, features: torch.Tensor, labels: PseudoLabels, cameras: torch.Tensor
    ) -> None:
        if not self.started or self.cfg.cluster_on == "extracted":
            # the first epoch (or every epoch, `extracted`): the image rows are these features
            source = self._fresh_source
            if source is None:  # none yet (alone), or carried from the last epoch (adapting)
                source = self.memory.bank[: int(self.memory.num_source)].clone()
            self._fresh_source = None
            self.memory.reset(source.to(features.device), features)
        if self.memory.num_target != len(labels):
            raise ValueError(
                f"spcl: the memory holds {self.memory.num_target} target images but this "
                f"epoch clustered {len(labels)}; the training set changed under the run"
            )
        self._labels = (
            self._self_paced(labels) if self.cfg.self_paced else singletons(labels.labels)
        )
        self.memory.set_target_classes(torch.from_numpy(self._labels))

    def _self_paced(self, labels: PseudoLabels) -> np.ndarray:
        c = self.cluster_cfg
        clustered = self._clustered if self._clustered is not None else self.memory.bank
        tight, loose = dbscan_at_radii(
            clustered[-len(labels) :], c, [c.eps - self.cfg.eps_gap, c.eps + self.cfg.eps_gap]
        )
        every = self.cfg.independence_rule == "every_epoch"
        kept = reliable_clusters(
            labels.labels,
            tight.labels,
            loose.labels,
            alpha=math.nan if every else float(self.alpha),  # nan: set from keep_share
            keep_share=self.cfg.independence_keep,
        )
        if every or math.isnan(float(self.alpha)):
            self.alpha.fill_(kept.alpha)
        log.info(
            "spcl: %d reliable clusters, %d un-clustered images (independence >= %.3f)",
            kept.num_clusters,
            kept.num_unclustered,
            kept.alpha,
        )
        return kept.labels

    def training_labels(self, labels: PseudoLabels) -> np.ndarray:
        if self._labels is None:
            raise RuntimeError("spcl: training_labels before start_epoch")
        return self._labels  # every image: reliable clusters, then one-image classes

    def _classes_and_rows(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Memory class and memory row of every batch sample (source samples first)."""
        s, sc = int(self.memory.num_source), batch.source_count
        classes, rows = batch.targets.clone(), batch.targets.clone()
        classes[sc:] += s
        rows[sc:] = s + batch.indexes[sc:] - int(self.num_source_samples)
        return classes, rows

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        classes, _ = self._classes_and_rows(batch)
        centroids = self.memory.centroids()
        t, sc = self.cfg.temperature, batch.source_count
        if self.cfg.loss == "official":
            present = self.memory.class_sizes() > 0

            def nce(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
                return hybrid_nce_official(x, c, centroids, t, present=present)
        else:

            def nce(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
                return hybrid_nce(x, c, centroids, t)

        if sc == 0:
            return {"hybrid_nce": nce(batch.features, classes)}
        x = batch.features
        return {"source_nce": nce(x[:sc], classes[:sc]), "target_nce": nce(x[sc:], classes[sc:])}

    @torch.no_grad()
    def update_memories(self, batch: Batch) -> None:
        _, rows = self._classes_and_rows(batch)
        self.memory.update(batch.features, rows)


def _build(cfg: SpCLConfig, ctx: MethodContext) -> Method:
    return SpCL(cfg, ctx)


register_method("spcl", SpCLConfig, _build, needs_source=None)
