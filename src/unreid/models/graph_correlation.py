"""Graph correlation learning (GCL, "Mind your clever neighbours", Eq. 1-5).

A set of B feature nodes is one graph. Two embeddings (FC C x C, BatchNorm,
L2 norm) turn every ordered pair into a relation theta(v_i)^T phi(v_j) in
[-1, 1]; a row softmax at temperature T (the relation is multiplied by T = 5)
makes attention m_ij, the refined node is the attention-weighted sum of the
raw nodes, and the relation-aware feature is the concatenation [v_i, v~_i].

The same weights serve both uses of the paper (Eq. 5 shares W_delta = W_theta,
W_zeta = W_phi):

* cluster refinement (CR): the whole training set, in a chosen order, cut
  into graphs of B consecutive images, in eval mode (BatchNorm running
  statistics), no gradient; the output replaces the raw features for the
  Jaccard + DBSCAN step;
* noise suppression (NS): the P x K training batch is one graph in train
  mode, and the loss on its relation-aware features trains the module.

Open choices, written down because no public code exists:

* The FC layers have no bias (BatchNorm follows and would cancel it).
* The relation-aware feature must be unit length to enter the cosine-based
  Jaccard distance and the contrastive loss, and the paper does not say how.
  ``concat_norm="joint"`` (default) L2-normalises the concatenation
  [v, v~] as a whole: since v~ is a convex combination of unit vectors its
  norm is <= 1, so a node whose attention is spread over dissimilar
  neighbours gets a smaller refined half. ``"halves"`` normalises v~ first
  and divides the concatenation by sqrt(2), so <v^_i, v^_j> is the plain
  mean of the raw and the refined cosine.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

CONCAT_NORMS = ("joint", "halves")


class GraphCorrelation(nn.Module):
    """Relation-aware features [v, sum_j m_ij v_j] of one graph of nodes (Eq. 1-4)."""

    def __init__(self, dim: int, temperature: float = 5.0, concat_norm: str = "joint") -> None:
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive int, found {dim!r}")
        if not (math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature must be a finite number > 0, found {temperature}")
        if concat_norm not in CONCAT_NORMS:
            raise ValueError(f"concat_norm must be one of {CONCAT_NORMS}, found {concat_norm!r}")
        self.dim = dim
        self.temperature = float(temperature)
        self.concat_norm = concat_norm
        self.theta = nn.Sequential(nn.Linear(dim, dim, bias=False), nn.BatchNorm1d(dim))
        self.phi = nn.Sequential(nn.Linear(dim, dim, bias=False), nn.BatchNorm1d(dim))

    @property
    def out_dim(self) -> int:
        return 2 * self.dim

    def attention(self, v: Tensor) -> Tensor:
        """(B, B) row-stochastic m_ij = softmax_j(T * theta(v_i)^T phi(v_j)) (Eq. 1-2)."""
        self._check(v)
        a = F.normalize(self.theta(v), dim=1)
        b = F.normalize(self.phi(v), dim=1)
        return torch.softmax(self.temperature * (a @ b.T), dim=1)

    def forward(self, v: Tensor) -> Tensor:
        """(B, 2C) unit-norm relation-aware features of the graph ``v`` (B, C)."""
        refined = self.attention(v) @ v  # Eq. 3
        return self.combine(v, refined)

    def combine(self, v: Tensor, refined: Tensor) -> Tensor:
        """[v, v~] (Eq. 4), made unit length as ``concat_norm`` says."""
        if self.concat_norm == "joint":
            return F.normalize(torch.cat([v, refined], dim=1), dim=1)
        halves = torch.cat([F.normalize(v, dim=1), F.normalize(refined, dim=1)], dim=1)
        return halves / math.sqrt(2.0)

    @torch.no_grad()
    def refine(self, features: Tensor, order: Tensor, graph_size: int = 16) -> Tensor:
        """Cluster refinement: relation-aware features of every row, in row order.

        ``order`` (N,) is a permutation of the rows; consecutive runs of
        ``graph_size`` in that order are the graphs (the last one may be
        smaller, a graph of one node refines to itself). Runs in eval mode and
        restores the module's mode afterwards. Graphs are batched so N / B
        small attention products run as one (G, B, B) product.
        """
        self._check(features)
        n = features.shape[0]
        if isinstance(graph_size, bool) or not isinstance(graph_size, int) or graph_size < 1:
            raise ValueError(f"graph_size must be a positive int, found {graph_size!r}")
        order = torch.as_tensor(order, dtype=torch.long, device=features.device)
        if order.shape != (n,) or not torch.equal(
            torch.sort(order).values, torch.arange(n, device=features.device)
        ):
            raise ValueError(f"order must be a permutation of the {n} feature rows")
        was_training = self.training
        self.eval()
        try:
            out = torch.empty(n, self.out_dim, dtype=features.dtype, device=features.device)
            full = (n // graph_size) * graph_size
            chunk = max(1, 4096 // graph_size)  # graphs per batched product
            for g0 in range(0, full, chunk * graph_size):
                rows = order[g0 : min(full, g0 + chunk * graph_size)]
                out[rows] = self._refine_graphs(features[rows], graph_size)
            if full < n:
                rows = order[full:]
                out[rows] = self._refine_graphs(features[rows], n - full)
        finally:
            self.train(was_training)
        return out

    def _refine_graphs(self, v: Tensor, graph_size: int) -> Tensor:
        """Rows of ``v`` are consecutive graphs of ``graph_size`` nodes."""
        a = F.normalize(self.theta(v), dim=1).view(-1, graph_size, self.dim)
        b = F.normalize(self.phi(v), dim=1).view(-1, graph_size, self.dim)
        m = torch.softmax(self.temperature * (a @ b.transpose(1, 2)), dim=2)
        refined = (m @ v.view(-1, graph_size, self.dim)).reshape(-1, self.dim)
        return self.combine(v, refined)

    def _check(self, v: Tensor) -> None:
        if not isinstance(v, Tensor) or v.dim() != 2 or v.shape[1] != self.dim:
            shape = tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__
            raise ValueError(f"expected node features of shape (B, {self.dim}), found {shape}")
        if v.shape[0] == 0:
            raise ValueError("a graph needs at least one node, found 0")
