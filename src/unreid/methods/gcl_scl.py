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
  ``gcl_scl.graph="knn"`` (ours, not the paper's) makes each image's graph
  itself and its B - 1 nearest neighbours by raw cosine instead: no order is
  read, and a graph never mixes an image with unrelated people.
  ``gcl_scl.cr_start_epoch`` (ours; 0 in the paper) clusters the raw features
  until that epoch while NS trains the module, so CR never clusters through a
  module that has only seen noise.
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
from dataclasses import dataclass

import numpy as np
import torch

from unreid.data.orders import SAMPLE_ORDERS, sample_order
from unreid.data.samples import Sample
from unreid.errors import check, check_choice, check_range
from unreid.losses import cluster_nce, selective_nce
from unreid.memory import ClusterMemory, build_cluster_memory
from unreid.methods.base import Batch, Method, MethodContext, register_method
from unreid.methods.diagnostics import attention_diagnostics
from unreid.models.graph_correlation import CONCAT_NORMS, GraphCorrelation, Refinement
from unreid.pseudo_labels import PseudoLabels
from unreid.pseudo_labels.knn import knn_search

log = logging.getLogger("unreid")

LOSS_MODES = ("selected", "all")
GRAPHS = ("chunks", "knn")  # CR graphs: ordered chunks (paper) or each image's kNN
UPDATE_POLICIES = ("topk", "random", "average")  # Table 3; "average" is "SCL off"


@dataclass
class GCLSCLConfig:
    """GCL + SCL ("Mind your clever neighbours"); the module docstring explains each choice."""

    # SCL memory update: "topk" (the k least similar instances, in order, Eq. 6),
    # "random" (one random instance) or "average" (batch mean; "SCL off").
    update: str = "topk"
    k: int = 2
    # Weight of the OLD row (Eq. 6's eta): 0.2 in the paper's implementation details
    # (its sensitivity study prefers 0.1).
    momentum: float = 0.2
    temperature: float = 0.05
    # Loss instances: "selected" (Eq. 7: those the update policy picks; all of them
    # for "average") or "all" (every batch instance, the ClusterNCE form).
    loss: str = "selected"
    # Eq. 8: L = L_scl(x) + lam * L_scl(x_hat).
    lam: float = 0.5
    # Cluster refinement (cluster GCL features of ordered graphs) and noise
    # suppression (the batch as one graph, trains the GCL module).
    cr: bool = True
    ns: bool = True
    graph_size: int = 16
    gcl_temperature: float = 5.0
    # Order of the training set for CR graphs: "name" (paper; leaks identity in
    # Market-style names), "camera_frame" or "random" (identity-free).
    order: str = "name"
    # CR graphs: "chunks" (the paper: consecutive runs of graph_size in `order`) or
    # "knn" (each image with its graph_size - 1 nearest neighbours; `order` unused).
    graph: str = "chunks"
    # Warm-up (ours; the paper: 0): epochs (0-based) before which the clustering sees
    # the raw features; NS still trains the GCL module, so CR starts from a trained one.
    cr_start_epoch: int = 0
    # Unit length of [v, v~]: "joint" (normalise the concatenation) or "halves".
    concat_norm: str = "joint"

    def __post_init__(self) -> None:
        check_choice("update", self.update, UPDATE_POLICIES)
        check_range("k", self.k, 1)
        check_range("momentum", self.momentum, 0.0, 1.0, high_open=True)
        check_range("temperature", self.temperature, 0.0, low_open=True)
        check_choice("loss", self.loss, LOSS_MODES)
        check_range("lam", self.lam, 0.0)
        check_range("graph_size", self.graph_size, 1)
        check_range("gcl_temperature", self.gcl_temperature, 0.0, low_open=True)
        check_choice("order", self.order, SAMPLE_ORDERS)
        check_choice("graph", self.graph, GRAPHS)
        check_range("cr_start_epoch", self.cr_start_epoch, 0)
        check_choice("concat_norm", self.concat_norm, CONCAT_NORMS)
        check("cr", self.cr, self.ns or not self.cr, "needs gcl_scl.ns=true (NS trains GCL)")

    def ignored(self) -> dict[str, str]:
        out = {}
        if self.update != "topk":
            out["k"] = f"gcl_scl.update={self.update}"
        if not self.ns:
            why = "gcl_scl.ns=false (no GCL module)"
            keys = ("lam", "graph_size", "gcl_temperature", "order", "concat_norm")
            out.update({key: why for key in keys})
        elif self.graph == "knn":
            out["order"] = "gcl_scl.graph=knn"
        if not self.cr and "cr_start_epoch" not in out:
            out["cr_start_epoch"] = "gcl_scl.cr=false"
        return out


class GCLSCL(Method):
    name = "gcl_scl"

    def __init__(self, cfg: GCLSCLConfig, feature_dim: int, seed: int) -> None:
        super().__init__()
        g = self.cfg = cfg
        self.seed = seed
        options = {"k": g.k} if g.update == "topk" else {}  # random: one instance; average: all
        self.memory = build_cluster_memory(g.update, feature_dim, g.momentum, **options)
        self.gcl: GraphCorrelation | None = None
        self.refined_memory: ClusterMemory | None = None
        if g.ns:
            self.gcl = GraphCorrelation(feature_dim, g.gcl_temperature, g.concat_norm)
            self.refined_memory = build_cluster_memory(
                g.update, 2 * feature_dim, g.momentum, **options
            )
        self._refined: tuple[int, Refinement] | None = None  # (epoch, v^) of the epoch
        # (entropy, top neighbour, pseudo label) per image, kept for `diagnostics`
        self._attention: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def relation_aware(self, features: torch.Tensor, order: np.ndarray | None) -> Refinement:
        """v^ of every training image: GCL over ordered chunks of ``order``, or over kNN graphs.

        ``order`` is only read for ``graph="chunks"``.
        """
        assert self.gcl is not None
        device = next(self.gcl.parameters()).device
        features = features.to(device)
        if self.cfg.graph == "knn":
            depth = min(self.cfg.graph_size, features.shape[0])
            _, neighbours = knn_search(features, depth)  # self first, then by cosine
            return self.gcl.refine_neighbours(features, torch.from_numpy(neighbours).to(device))
        assert order is not None
        return self.gcl.refine_chunks(
            features, torch.from_numpy(order).to(device), self.cfg.graph_size
        )

    def clustering_features(
        self, epoch: int, features: torch.Tensor, samples: list[Sample]
    ) -> torch.Tensor:
        if self.gcl is None:
            return features
        order = None
        if self.cfg.graph == "chunks":
            order = sample_order(samples, self.cfg.order, seed=self.seed * 1000 + epoch)
        refined = self.relation_aware(features, order)
        self._refined = (epoch, refined)
        return refined.features if self.cfg.cr and epoch >= self.cfg.cr_start_epoch else features

    def start_epoch(
        self, epoch: int, features: torch.Tensor, labels: PseudoLabels, cameras: torch.Tensor
    ) -> None:
        self.memory.reset(labels.centroids(features).to(self.memory.bank.device))
        if self.refined_memory is not None:
            if self._refined is None or self._refined[0] != epoch:
                # called without clustering_features (e.g. a script): dataset order
                order = np.arange(features.shape[0], dtype=np.int64)
                self._refined = (epoch, self.relation_aware(features, order))
            refined = self._refined[1]
            self.refined_memory.reset(
                labels.centroids(refined.features).to(self.refined_memory.bank.device)
            )
            entropy, top = refined.entropy.cpu().numpy(), refined.top.cpu().numpy()
            self._attention = (entropy, top, np.asarray(labels.labels))
        self._refined = None

    def diagnostics(self, true_ids: np.ndarray | None) -> dict[str, float]:
        """CR's attention this epoch: its entropy and whether the top neighbour is the same person."""
        out = super().diagnostics(true_ids)
        if self._attention is not None:
            out.update(attention_diagnostics(*self._attention, true_ids))
            self._attention = None
        return out

    def _loss(
        self, key: str, memory: ClusterMemory, x: torch.Tensor, y: torch.Tensor, extras: dict
    ) -> torch.Tensor:
        positions, ranks = memory.select(x.detach(), y)
        # the update after the step applies the very selection the loss used (random draws
        # included); a batch without it (e.g. gathered from several ranks) selects afresh
        extras[f"{key}_positions"], extras[f"{key}_ranks"] = positions, ranks
        if self.cfg.loss == "all":
            return cluster_nce(x, y, memory.bank, self.cfg.temperature)
        return selective_nce(
            x, y, memory.bank, temperature=self.cfg.temperature, positions=positions
        )

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        x, y, extras = batch.features, batch.targets, batch.extras
        out = {"scl": self._loss("raw", self.memory, x, y, extras)}
        if self.gcl is not None and self.refined_memory is not None:
            x_hat = self.gcl(x)  # the batch is one graph (Eq. 5), train-mode BatchNorm
            extras["x_hat"] = x_hat
            refined = self._loss("refined", self.refined_memory, x_hat, y, extras)
            out["scl_refined"] = self.cfg.lam * refined
        return out

    @torch.no_grad()
    def update_memories(self, batch: Batch) -> None:
        x, y = batch.features, batch.targets
        self._update("raw", self.memory, x, y, batch.extras)
        if self.refined_memory is not None:
            x_hat = batch.extras.get("x_hat")
            if x_hat is None:
                assert self.gcl is not None
                x_hat = self.gcl(x)
            self._update("refined", self.refined_memory, x_hat.detach(), y, batch.extras)

    def _update(
        self, key: str, memory: ClusterMemory, x: torch.Tensor, y: torch.Tensor, extras: dict
    ) -> None:
        # the selection the loss used (the bank has not moved since); fresh if none
        if f"{key}_positions" in extras:
            positions, ranks = extras[f"{key}_positions"], extras[f"{key}_ranks"]
        else:
            positions, ranks = memory.select(x, y)
        memory.update_selected(x, y, positions, ranks)


def _build(cfg: GCLSCLConfig, ctx: MethodContext) -> Method:
    return GCLSCL(cfg, ctx.feature_dim, ctx.seed)


register_method("gcl_scl", GCLSCLConfig, _build)
