"""CSA + HPS: self-attention cluster prototypes and hard positive sampling.

Source: only the abstract of "A new robust contrastive learning for
unsupervised person re-identification" (IJMLC 2023) exists, and no code. What
it says: clustering errors corrupt the memory's prototypes at initialisation
and at update; CSA aggregates each cluster's samples with multi-head
self-attention so prototypes come from within-cluster similarities; a
self-attention aggregation module (SAA), trained through CSA, gives each
sample's dispersion degree; HPS updates each prototype with its cluster's
hardest positive by that dispersion. Cluster Contrast is the base.

What we built (``models/set_attention.py`` holds the module):

* SAA: H heads over D/H feature slices, identity-initialised query/key maps,
  member-to-member attention at temperature 0.1; a member's received
  attention (column mean) weights it in the prototype, and its dispersion is
  1 - n * (mean received attention): how much less than an average share of
  the cluster's attention it gets.
* Training SAA (the abstract does not say how): every cluster group of the
  P x K batch is aggregated with gradient, and the group prototype is
  contrasted against the cluster memory (ClusterNCE, weight
  ``aggregation_weight``), next to Cluster Contrast's instance ClusterNCE.
  Gradients reach SAA and, through the members, the backbone.
* CSA initialisation (``init="csa"``): at epoch start every cluster's memory
  row is its SAA prototype over all its members (no gradient; clusters packed
  by size into bounded-memory blocks). ``init="mean"`` is CC's mean.
* HPS update (``update="hps"``): after the step, per cluster in the batch,
  the instance with the highest dispersion within the batch group (computed
  in the forward pass, with the weights the loss used) moves the row with
  momentum 0.1 (CC's convention: weight of the old row). ``"hard"`` (least
  similar to the row) and ``"mean"`` (batch mean; "HPS off") are the
  comparisons. Ranking within the batch group, not over the whole cluster,
  keeps the dispersion current with the features being trained.
* Warm-up (``saa_start_epoch``, ours): before that epoch the memory starts
  from cluster means and takes the least similar instance (``update="hard"``)
  while the aggregation loss already trains SAA.
* SAA exists (and its loss is on) whenever CSA or HPS uses it; with
  ``init=mean, update=mean`` the method is Cluster Contrast with the mean
  update.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from unreid.errors import check_choice, check_range
from unreid.losses import cluster_nce
from unreid.memory import build_cluster_memory
from unreid.memory.selection import group_by_target, least_similar_per_cluster
from unreid.methods.base import Batch, Method, MethodContext, register_method
from unreid.methods.diagnostics import dispersion_diagnostics
from unreid.models.set_attention import SelfAttentionAggregation
from unreid.pseudo_labels import PseudoLabels

INITS = ("csa", "mean")
UPDATES = ("hps", "hard", "mean")


@dataclass
class CSAHPSConfig:
    """CSA + HPS on Cluster Contrast; the module docstring explains the design."""

    # Prototype initialisation: "csa" (self-attention aggregation of each cluster)
    # or "mean" (Cluster Contrast's normalised mean; "CSA off").
    init: str = "csa"
    # Memory update per cluster in the batch: "hps" (its most dispersed instance by
    # the SAA module), "hard" (least similar to the row) or "mean" (momentum towards
    # the batch mean; "HPS off").
    update: str = "hps"
    momentum: float = 0.1
    temperature: float = 0.05
    heads: int = 8
    attention_temperature: float = 0.1
    # Weight of the aggregation loss that trains SAA: each batch cluster group's
    # aggregated prototype, ClusterNCE against the memory.
    aggregation_weight: float = 1.0
    # Warm-up (ours; 0 = SAA from the start): epochs (0-based) before which the memory
    # is Cluster Contrast's hard variant (mean prototypes, least-similar update) while
    # the aggregation loss already trains SAA, so SAA never shapes the memory untrained.
    saa_start_epoch: int = 0

    def __post_init__(self) -> None:
        check_choice("init", self.init, INITS)
        check_choice("update", self.update, UPDATES)
        check_range("momentum", self.momentum, 0.0, 1.0, high_open=True)
        check_range("temperature", self.temperature, 0.0, low_open=True)
        check_range("attention_temperature", self.attention_temperature, 0.0, low_open=True)
        check_range("aggregation_weight", self.aggregation_weight, 0.0)
        check_range("heads", self.heads, 1)
        check_range("saa_start_epoch", self.saa_start_epoch, 0)

    def ignored(self) -> dict[str, str]:
        if self.init == "mean" and self.update != "hps":  # no SAA module at all
            why = f"csa_hps.init=mean, update={self.update}"
            keys = ("heads", "attention_temperature", "aggregation_weight", "saa_start_epoch")
            return {key: why for key in keys}
        return {}


class CSAHPS(Method):
    name = "csa_hps"
    # HPS picks the most dispersed instance as the forward pass saw it (before the step)
    row_extras = ("dispersion",)

    def __init__(self, cfg: CSAHPSConfig, feature_dim: int) -> None:
        super().__init__()
        c = self.cfg = cfg
        if feature_dim % c.heads:
            raise ValueError(f"csa_hps.heads={c.heads} must divide the feature size {feature_dim}")
        policy = {"hps": "hard", "hard": "hard", "mean": "mean"}[c.update]
        self.memory = build_cluster_memory(policy, feature_dim, c.momentum)
        self.saa: SelfAttentionAggregation | None = None
        if c.init == "csa" or c.update == "hps":
            self.saa = SelfAttentionAggregation(feature_dim, c.heads, c.attention_temperature)
        self._saa_feeds_memory = True  # False in warm-up epochs (`saa_start_epoch`)
        # epoch-start dispersion and pseudo labels, kept for `diagnostics`
        self._dispersion: tuple[np.ndarray, np.ndarray] | None = None

    def start_epoch(
        self, epoch: int, features: torch.Tensor, labels: PseudoLabels, cameras: torch.Tensor
    ) -> None:
        self._dispersion = None
        self._saa_feeds_memory = epoch >= self.cfg.saa_start_epoch
        if self.saa is None:
            self.memory.reset(labels.centroids(features).to(self.memory.bank.device))
            return
        was_training = self.saa.training
        self.saa.eval()
        with torch.no_grad():
            ids = torch.tensor(labels.labels, dtype=torch.long)
            protos, dispersion = self.saa.aggregate_clusters(
                features.to(self.memory.bank.device), ids, labels.num_clusters
            )
        self.saa.train(was_training)
        if self.cfg.init == "csa" and self._saa_feeds_memory:
            self.memory.reset(protos)
        else:
            self.memory.reset(labels.centroids(features).to(self.memory.bank.device))
        self._dispersion = (dispersion.cpu().numpy(), np.asarray(labels.labels))

    def diagnostics(self, true_ids: np.ndarray | None) -> dict[str, float]:
        """SAA's epoch-start dispersion of every clustered image against the true outliers."""
        out = super().diagnostics(true_ids)
        if self._dispersion is not None:
            out.update(dispersion_diagnostics(*self._dispersion, true_ids))
            self._dispersion = None
        return out

    def _groups(self, x: torch.Tensor, y: torch.Tensor):
        """SAA over the batch's cluster groups: prototypes, their ids, per-instance dispersion."""
        assert self.saa is not None
        index, mask, ids = group_by_target(y)
        protos, disp = self.saa.aggregate(x[index], mask)
        dispersion = torch.zeros(len(y), dtype=x.dtype, device=x.device)
        dispersion[index[mask]] = disp[mask].detach()
        return protos, ids, dispersion

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        x, y = batch.features, batch.targets
        c = self.cfg
        out = {"cluster_nce": cluster_nce(x, y, self.memory.bank, c.temperature)}
        if self.saa is not None:
            protos, ids, dispersion = self._groups(x, y)
            batch.extras["dispersion"] = dispersion
            if c.aggregation_weight > 0:
                agg = cluster_nce(protos, ids, self.memory.bank, c.temperature)
                out["aggregation_nce"] = c.aggregation_weight * agg
        return out

    @torch.no_grad()
    def update_memories(self, batch: Batch) -> None:
        x, y = batch.features, batch.targets
        if self.cfg.update != "hps" or not self._saa_feeds_memory:
            # "hard" (and HPS's warm-up): least similar to the row; "mean": batch mean
            self.memory.update(x, y)
            return
        dispersion = batch.extras.get("dispersion")
        if dispersion is None:
            dispersion = self._groups(x, y)[2]
        # the most dispersed instance of each cluster: lowest -dispersion
        self.memory.update_selected(x, y, *least_similar_per_cluster(-dispersion, y, 1))


def _build(cfg: CSAHPSConfig, ctx: MethodContext) -> Method:
    return CSAHPS(cfg, ctx.feature_dim)


register_method("csa_hps", CSAHPSConfig, _build)
