"""GCL + SCL (Jia et al., "Mind your clever neighbours", AAAI 2022).

No public code exists; every choice the paper leaves open is listed here and
is a ``gcl_scl.*`` config option where it could matter.

Pieces (paper equations):

* GCL module (Eq. 1-4, ``models/graph_correlation.py``): FC + BN + L2
  embeddings, attention softmax_j(T * theta(v_i)^T phi(v_j)), T = 5,
  relation-aware feature [v, sum_j m_ij v_j].
* Cluster refinement (CR, ``gcl_scl.cr``): before clustering, the training
  set in ``gcl_scl.order`` is cut into graphs of B = 16 consecutive images;
  Jaccard + DBSCAN run on the relation-aware features, and their labels are
  the raw images' pseudo labels. ``order="name"`` is the paper's and groups
  each person's images (identity leak on Market-style names); ``"random"``
  and ``"camera_frame"`` carry no identity (``data/orders.py``).
* Noise suppression (NS, ``gcl_scl.ns``): the P x K batch is one graph, in
  train mode, with the same weights (Eq. 5); the loss on its relation-aware
  features x^ is what trains the GCL module. CR needs NS (the paper never runs
  CR alone: the module would stay at its random initialisation).
* SCL (Eq. 6-7, ``memory/selective_memory.py``, ``losses/selective_nce.py``):
  a cluster memory initialised with the cluster means; per cluster in the
  batch, its k = 2 least similar instances (ranked once against the row before
  the update) update the row with momentum, hardest first, and are the
  instances the loss is computed on. ``update="random"`` / ``"average"`` give
  Table 3's other policies, ``"average"`` being "SCL off" (Table 2).
* Eq. 8: L = L_scl(x) + lam * L_scl(x^), lam = 0.5.

Choices the paper leaves open:

* eta: 0.2 (implementation details; the sensitivity study says 0.1), the
  weight of the old row, renormalised after every step as in Cluster Contrast.
* The x^ memory (dimension 2C): a second selective memory, initialised with
  the cluster means of the relation-aware features of the whole training set
  (the CR graphs of the epoch, in ``gcl_scl.order``; computed for this even
  when CR is off) and updated by the same policy from the batch's x^, ranked
  against its own rows. Its selection is independent of the raw one.
* Eq. 7 sums over the selected instances; the loss here is their mean.
  ``loss="all"`` computes it on every batch instance instead.
* The relation-aware feature is made unit length by normalising the
  concatenation (``concat_norm``; see ``graph_correlation.py``).
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from unreid.config import Config
from unreid.data.orders import SAMPLE_ORDERS, sample_order
from unreid.data.samples import Sample
from unreid.losses import cluster_nce
from unreid.memory.selective_memory import UPDATE_POLICIES, SelectiveClusterMemory
from unreid.methods.base import Batch, Method, register_method
from unreid.models.graph_correlation import CONCAT_NORMS, GraphCorrelation
from unreid.pseudo_labels import PseudoLabels

log = logging.getLogger("unreid")

LOSS_MODES = ("selected", "all")


class GCLSCL(Method):
    name = "gcl_scl"

    def __init__(self, cfg: Config, feature_dim: int) -> None:
        super().__init__()
        g = cfg.gcl_scl
        checks = [
            ("update", g.update in UPDATE_POLICIES, f"must be one of {UPDATE_POLICIES}"),
            ("k", g.k >= 1, "must be >= 1"),
            ("momentum", 0.0 <= g.momentum < 1.0, "must be in [0, 1)"),
            ("temperature", g.temperature > 0, "must be > 0"),
            ("loss", g.loss in LOSS_MODES, f"must be one of {LOSS_MODES}"),
            ("lam", g.lam >= 0, "must be >= 0"),
            ("graph_size", g.graph_size >= 1, "must be >= 1"),
            ("gcl_temperature", g.gcl_temperature > 0, "must be > 0"),
            ("order", g.order in SAMPLE_ORDERS, f"must be one of {SAMPLE_ORDERS}"),
            ("concat_norm", g.concat_norm in CONCAT_NORMS, f"must be one of {CONCAT_NORMS}"),
            ("cr", g.ns or not g.cr, "needs gcl_scl.ns=true (NS is what trains the GCL module)"),
        ]
        for key, ok, message in checks:
            if not ok:
                raise ValueError(f"gcl_scl.{key} {message} (got {getattr(g, key)!r})")
        self.cfg = g
        self.seed = cfg.train.seed
        self.memory = SelectiveClusterMemory(feature_dim, g.momentum, g.update, g.k)
        self.gcl: GraphCorrelation | None = None
        self.refined_memory: SelectiveClusterMemory | None = None
        if g.ns:
            self.gcl = GraphCorrelation(feature_dim, g.gcl_temperature, g.concat_norm)
            self.refined_memory = SelectiveClusterMemory(2 * feature_dim, g.momentum, g.update, g.k)
        self._refined: tuple[int, torch.Tensor] | None = None  # (epoch, v^) of the epoch
        self._selection: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def relation_aware(self, epoch: int, features: torch.Tensor, order: np.ndarray) -> torch.Tensor:
        """v^ of every training image: GCL over graphs of ``graph_size`` in ``order``."""
        assert self.gcl is not None
        device = next(self.gcl.parameters()).device
        return self.gcl.refine(
            features.to(device), torch.from_numpy(order).to(device), self.cfg.graph_size
        )

    def clustering_features(
        self, epoch: int, features: torch.Tensor, samples: list[Sample]
    ) -> torch.Tensor:
        if self.gcl is None:
            return features
        order = sample_order(samples, self.cfg.order, seed=self.seed * 1000 + epoch)
        refined = self.relation_aware(epoch, features, order)
        self._refined = (epoch, refined)
        return refined if self.cfg.cr else features

    def start_epoch(
        self, epoch: int, features: torch.Tensor, labels: PseudoLabels, cameras: torch.Tensor
    ) -> None:
        self.memory.reset(labels.centroids(features).to(self.memory.bank.device))
        if self.refined_memory is not None:
            if self._refined is None or self._refined[0] != epoch:
                # called without clustering_features (e.g. a script): dataset order
                order = np.arange(features.shape[0], dtype=np.int64)
                self._refined = (epoch, self.relation_aware(epoch, features, order))
            refined = self._refined[1]
            self.refined_memory.reset(labels.centroids(refined).to(self.refined_memory.bank.device))
        self._refined = None

    def _loss(
        self, key: str, memory: SelectiveClusterMemory, x: torch.Tensor, y: torch.Tensor
    ) -> torch.Tensor:
        positions, ranks = memory.select(x.detach(), y)
        self._selection[key] = (positions, ranks)
        if self.cfg.loss == "selected":
            x, y = x[positions], y[positions]
        return cluster_nce(x, y, memory.bank, self.cfg.temperature)

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        x, y = batch.features, batch.targets
        self._selection = {}
        out = {"scl": self._loss("raw", self.memory, x, y)}
        if self.gcl is not None and self.refined_memory is not None:
            x_hat = self.gcl(x)  # the batch is one graph (Eq. 5), train-mode BatchNorm
            batch.extras["x_hat"] = x_hat
            out["scl_refined"] = self.cfg.lam * self._loss("refined", self.refined_memory, x_hat, y)
        return out

    @torch.no_grad()
    def update_memories(self, batch: Batch) -> None:
        x, y = batch.features, batch.targets
        self._update("raw", self.memory, x, y)
        if self.refined_memory is not None:
            x_hat = batch.extras.get("x_hat")
            if x_hat is None:
                assert self.gcl is not None
                x_hat = self.gcl(x)
            self._update("refined", self.refined_memory, x_hat.detach(), y)
        self._selection = {}

    def _update(
        self, key: str, memory: SelectiveClusterMemory, x: torch.Tensor, y: torch.Tensor
    ) -> None:
        # the selection the loss used (the bank has not moved since); fresh if none
        positions, ranks = self._selection.get(key) or memory.select(x, y)
        memory.update_selected(x, y, positions, ranks)

    def describe(self) -> str:
        g = self.cfg
        return (
            f"gcl_scl(update={g.update}, k={g.k}, cr={g.cr}, ns={g.ns}, order={g.order}, "
            f"loss={g.loss})"
        )


@register_method("gcl_scl")
def _build(cfg: Config, feature_dim: int) -> Method:
    return GCLSCL(cfg, feature_dim)
