"""Graph correlation learning (GCL, "Mind your clever neighbours", Eq. 1-5).

A set of B feature nodes is one graph. Two embeddings (FC C x C, BatchNorm,
L2 norm) turn every ordered pair into a relation theta(v_i)^T phi(v_j) in
[-1, 1]; a row softmax at temperature T (the relation is multiplied by T = 5)
makes attention m_ij, the refined node is the attention-weighted sum of the
raw nodes, and the relation-aware feature is the concatenation [v_i, v~_i].

The same weights serve both uses of the paper (Eq. 5 shares W_delta = W_theta,
W_zeta = W_phi):

* cluster refinement (CR): the whole training set, in a chosen order, cut
  into graphs of B consecutive images (``refine``; the paper), or each image
  with its B - 1 nearest neighbours as its own graph (``refine_neighbours``;
  ours, identity-free by construction), in eval mode (BatchNorm running
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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

CONCAT_NORMS = ("joint", "halves")


@dataclass(frozen=True)
class Refinement:
    """Relation-aware features of every row, and what its own attention row looked like.

    The attention statistics are what the diagnosis of CR reads: a row whose
    attention is spread evenly (high entropy) or whose top neighbour belongs to
    another person refines towards noise.
    """

    features: Tensor  # (N, 2C) unit-norm [v, v~]
    entropy: Tensor  # (N,) entropy (nats) of the row's attention over its graph
    top: Tensor  # (N,) row index of the node it attends to most, itself excluded; -1 alone


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
        """Cluster refinement over ordered chunks: the features of `refine_chunks`."""
        return self.refine_chunks(features, order, graph_size).features

    @torch.no_grad()
    def refine_chunks(self, features: Tensor, order: Tensor, graph_size: int = 16) -> Refinement:
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
        out = self._empty(features)
        full = (n // graph_size) * graph_size
        chunk = max(1, 4096 // graph_size)  # graphs per batched product
        with self._eval_mode():
            for g0 in range(0, full, chunk * graph_size):
                rows = order[g0 : min(full, g0 + chunk * graph_size)]
                self._refine_graphs(features, rows.view(-1, graph_size), out, rows)
            if full < n:
                rows = order[full:]
                self._refine_graphs(features, rows.view(1, -1), out, rows)
        return out

    @torch.no_grad()
    def refine_neighbours(self, features: Tensor, neighbours: Tensor) -> Refinement:
        """Cluster refinement on kNN graphs: row i's graph is ``neighbours[i]`` (N, B).

        Column 0 of ``neighbours`` must be the row itself (as `knn_search` ranks
        them). Only row i's own attention row is computed for its graph, over the
        B nodes, so the result for i equals the i-th node of ``forward`` on
        ``features[neighbours[i]]`` in eval mode. Unlike ordered chunks, a graph
        never holds images that are far from its centre, and no order of the
        images (no file name) is read.
        """
        self._check(features)
        n = features.shape[0]
        neighbours = torch.as_tensor(neighbours, dtype=torch.long, device=features.device)
        if neighbours.dim() != 2 or neighbours.shape[0] != n or neighbours.shape[1] < 1:
            shape = tuple(neighbours.shape)
            raise ValueError(f"neighbours must have shape ({n}, B) with B >= 1, found {shape}")
        if n and not (neighbours[:, 0] == torch.arange(n, device=features.device)).all():
            raise ValueError("neighbours[:, 0] must be each row itself (self first, then kNN)")
        if n and (neighbours.min() < 0 or neighbours.max() >= n):
            raise ValueError(f"neighbours must be row indices in [0, {n})")
        out = self._empty(features)
        chunk = max(1, 4096 // neighbours.shape[1])
        with self._eval_mode():
            a, b = self._embed(features)
            for r0 in range(0, n, chunk):
                rows = torch.arange(r0, min(n, r0 + chunk), device=features.device)
                graph = neighbours[rows]  # (r, B)
                scores = torch.einsum("rd,rbd->rb", a[rows], b[graph])
                m = torch.softmax(self.temperature * scores, dim=1)
                refined = torch.einsum("rb,rbd->rd", m, features[graph])
                self._store(out, rows, self.combine(features[rows], refined), m, graph, 0)
        return out

    def _empty(self, features: Tensor) -> Refinement:
        n, device = features.shape[0], features.device
        return Refinement(
            torch.empty(n, self.out_dim, dtype=features.dtype, device=device),
            torch.empty(n, dtype=features.dtype, device=device),
            torch.empty(n, dtype=torch.long, device=device),
        )

    @contextmanager
    def _eval_mode(self) -> Iterator[None]:
        """Eval mode (BatchNorm running statistics) inside, the caller's mode restored after."""
        was_training = self.training
        self.eval()
        try:
            yield
        finally:
            self.train(was_training)

    def _embed(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """Unit theta and phi embeddings of every row, in blocks (eval mode: rows independent)."""
        blocks = [features[r : r + 4096] for r in range(0, features.shape[0], 4096)]
        a = torch.cat([F.normalize(self.theta(x), dim=1) for x in blocks])
        b = torch.cat([F.normalize(self.phi(x), dim=1) for x in blocks])
        return a, b

    def _refine_graphs(self, features: Tensor, graphs: Tensor, out: Refinement, rows: Tensor):
        """``graphs`` (G, B): row indices of G graphs of B nodes; results go to ``out[rows]``."""
        g, size = graphs.shape
        v = features[graphs.reshape(-1)]
        a = F.normalize(self.theta(v), dim=1).view(g, size, self.dim)
        b = F.normalize(self.phi(v), dim=1).view(g, size, self.dim)
        m = torch.softmax(self.temperature * (a @ b.transpose(1, 2)), dim=2)  # (G, B, B)
        refined = (m @ v.view(g, size, self.dim)).reshape(-1, self.dim)
        # node j of graph k attends over graphs[k]; its own column is j
        nodes = graphs.repeat_interleave(size, dim=0)  # (G*B, B): each node's graph
        self_col = torch.arange(size, device=v.device).repeat(g)
        self._store(out, rows, self.combine(v, refined), m.reshape(-1, size), nodes, self_col)

    @staticmethod
    def _store(out: Refinement, rows: Tensor, feats: Tensor, m: Tensor, graph: Tensor, self_col):
        """Features, attention entropy and top other node of ``rows``, whose attention is ``m``."""
        out.features[rows] = feats
        out.entropy[rows] = -(m * torch.log(m.clamp_min(1e-30))).sum(dim=1)
        if m.shape[1] == 1:
            out.top[rows] = -1
            return
        others = m.clone()
        idx = torch.arange(m.shape[0], device=m.device)
        others[idx, torch.as_tensor(self_col, device=m.device).expand(m.shape[0])] = -1.0
        out.top[rows] = graph[idx, others.argmax(dim=1)]

    def _check(self, v: Tensor) -> None:
        if not isinstance(v, Tensor) or v.dim() != 2 or v.shape[1] != self.dim:
            shape = tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__
            raise ValueError(f"expected node features of shape (B, {self.dim}), found {shape}")
        if v.shape[0] == 0:
            raise ValueError("a graph needs at least one node, found 0")
