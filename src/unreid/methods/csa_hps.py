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
* SAA exists (and its loss is on) whenever CSA or HPS uses it; with
  ``init=mean, update=mean`` the method is Cluster Contrast with the mean
  update.
"""

from __future__ import annotations

import torch

from unreid.config import Config
from unreid.losses import cluster_nce
from unreid.memory.selection import group_by_target
from unreid.memory.selective_memory import SelectiveClusterMemory
from unreid.methods.base import Batch, Method, register_method
from unreid.models.set_attention import SelfAttentionAggregation
from unreid.pseudo_labels import PseudoLabels

INITS = ("csa", "mean")
UPDATES = ("hps", "hard", "mean")


class CSAHPS(Method):
    name = "csa_hps"

    def __init__(self, cfg: Config, feature_dim: int) -> None:
        super().__init__()
        c = cfg.csa_hps
        checks = [
            ("init", c.init in INITS, f"must be one of {INITS}"),
            ("update", c.update in UPDATES, f"must be one of {UPDATES}"),
            ("momentum", 0.0 <= c.momentum < 1.0, "must be in [0, 1)"),
            ("temperature", c.temperature > 0, "must be > 0"),
            ("attention_temperature", c.attention_temperature > 0, "must be > 0"),
            ("aggregation_weight", c.aggregation_weight >= 0, "must be >= 0"),
            ("heads", c.heads >= 1 and feature_dim % c.heads == 0, f"must divide {feature_dim}"),
        ]
        for key, ok, message in checks:
            if not ok:
                raise ValueError(f"csa_hps.{key} {message} (got {getattr(c, key)!r})")
        self.cfg = c
        policy = {"hps": "topk", "hard": "topk", "mean": "average"}[c.update]
        self.memory = SelectiveClusterMemory(feature_dim, c.momentum, policy, k=1)
        self.saa: SelfAttentionAggregation | None = None
        if c.init == "csa" or c.update == "hps":
            self.saa = SelfAttentionAggregation(feature_dim, c.heads, c.attention_temperature)

    def start_epoch(
        self, epoch: int, features: torch.Tensor, labels: PseudoLabels, cameras: torch.Tensor
    ) -> None:
        if self.cfg.init == "csa":
            assert self.saa is not None
            was_training = self.saa.training
            self.saa.eval()
            with torch.no_grad():
                ids = torch.tensor(labels.labels, dtype=torch.long)
                protos, _ = self.saa.aggregate_clusters(
                    features.to(self.memory.bank.device), ids, labels.num_clusters
                )
            self.saa.train(was_training)
            self.memory.reset(protos)
        else:
            self.memory.reset(labels.centroids(features).to(self.memory.bank.device))

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
        if self.cfg.update != "hps":
            self.memory.update(x, y)  # "hard": least similar to the row; "mean": batch mean
            return
        dispersion = batch.extras.get("dispersion")
        if dispersion is None:
            dispersion = self._groups(x, y)[2]
        self.memory.update_lowest(x, y, -dispersion, k=1)  # the most dispersed instance

    def describe(self) -> str:
        return f"csa_hps(init={self.cfg.init}, update={self.cfg.update})"


@register_method("csa_hps")
def _build(cfg: Config, feature_dim: int) -> Method:
    return CSAHPS(cfg, feature_dim)
