"""Self-attention aggregation (SAA) of a cluster's members into one prototype.

The CSA + HPS paper ("A new robust contrastive learning for unsupervised
person re-identification") is available only as an abstract: a multi-head
self-attention module aggregates the samples of each cluster so prototypes
come from the similarities within the cluster, and the same module, once
trained, gives each sample's dispersion degree. Our design:

* H heads, each owning a D/H slice of the feature. Head h projects the slice
  with its own query and key maps (initialised to the identity, so before any
  training the attention already follows feature similarity) and forms the
  member-to-member attention A_h = softmax_j(cos(q_i, k_j) / t) over the
  cluster's n members (t = ``temperature``), each member attending to the
  *others* (its own cosine, 1, would otherwise take most of its attention;
  a cluster of one attends to itself).
* A member's *received attention* w_h[j] = mean_i A_h[i, j] sums to 1 over
  the members. The head's part of the prototype is sum_j w_h[j] x_j (slice h),
  i.e. the mean of the self-attended members; the prototype is the
  concatenation over heads, L2-normalised. Members that many others attend to
  weigh more, isolated (likely mis-clustered) members less.
* Dispersion of member j: 1 - n * mean_h w_h[j] (0 for a member receiving an
  average share, towards 1 for one nobody attends to; negative for central
  members). It is what HPS ranks by.

Properties the tests check: the prototype is invariant and the dispersion
equivariant to permutations of the members; a cluster of one is its own
prototype with dispersion 0; clusters of any size run in bounded memory
(the column means are accumulated over blocks of query rows).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_BLOCK_ELEMS = 1 << 24  # attention entries held at once (query rows are blocked)
_PACK_ROWS = 8192  # member rows (padded) aggregated at once when packing clusters


class SelfAttentionAggregation(nn.Module):
    def __init__(self, dim: int, heads: int = 8, temperature: float = 0.1) -> None:
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive int, found {dim!r}")
        if isinstance(heads, bool) or not isinstance(heads, int) or heads < 1 or dim % heads:
            raise ValueError(f"heads must be a positive divisor of dim={dim}, found {heads!r}")
        if not (math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature must be a finite number > 0, found {temperature}")
        self.dim, self.heads, self.temperature = dim, heads, float(temperature)
        self.head_dim = dim // heads
        eye = torch.eye(self.head_dim).repeat(heads, 1, 1)  # (H, d, d)
        self.query = nn.Parameter(eye.clone())
        self.key = nn.Parameter(eye.clone())

    def _heads(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Unit queries and keys per head: (..., H, n, d) from x (..., n, D)."""
        xs = x.unflatten(-1, (self.heads, self.head_dim)).transpose(-3, -2)  # (..., H, n, d)
        q = F.normalize(xs @ self.query, dim=-1)
        k = F.normalize(xs @ self.key, dim=-1)
        return q, k

    def received_attention(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """(G, H, n) w_h[j] = mean over (real) query rows i of A_h[i, j], for x (G, n, D).

        ``mask`` (G, n) marks real members of padded groups; padded keys get
        no attention and padded query rows are left out of the mean.
        """
        self._check(x)
        g, n, _ = x.shape
        mask = torch.ones(g, n, dtype=torch.bool, device=x.device) if mask is None else mask
        if mask.shape != (g, n):
            raise ValueError(f"mask must be (G, n) = {(g, n)}, found {tuple(mask.shape)}")
        if not mask.any(dim=1).all():
            raise ValueError("every group needs at least one member")
        q, k = self._heads(x)  # (G, H, n, d)
        key_bias = torch.zeros(g, 1, 1, n, dtype=x.dtype, device=x.device)
        key_bias = key_bias.masked_fill(~mask[:, None, None, :], float("-inf"))
        rows = mask[:, None, :, None].to(x.dtype)  # (G, 1, n, 1)
        total = torch.zeros(g, self.heads, n, dtype=x.dtype, device=x.device)
        block = max(1, _BLOCK_ELEMS // (g * self.heads * n))
        # a member does not vote for itself (its own cosine, 1, would swamp the
        # others'), except in a cluster of one, where it is all there is
        alone = mask.sum(dim=1) == 1  # (G,)
        cols = torch.arange(n, device=x.device)
        for r0 in range(0, n, block):
            logits = q[:, :, r0 : r0 + block] @ k.transpose(-1, -2) / self.temperature
            diag = cols[r0 : r0 + block, None] == cols[None, :]  # (rows, n)
            self_bias = diag[None, None] & ~alone[:, None, None, None]
            logits = logits.masked_fill(self_bias, float("-inf"))
            att = torch.softmax(logits + key_bias, dim=-1)  # (G, H, rows, n)
            att = torch.nan_to_num(att, nan=0.0)  # padded query rows of a one-member group
            total = total + (att * rows[:, :, r0 : r0 + block]).sum(dim=2)
        return total / mask.sum(dim=1).to(x.dtype)[:, None, None]

    def aggregate(self, x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Prototypes (G, D), unit norm, and dispersion (G, n) of groups x (G, n, D)."""
        w = self.received_attention(x, mask)  # (G, H, n)
        xs = x.unflatten(-1, (self.heads, self.head_dim))  # (G, n, H, d)
        proto = torch.einsum("ghn,gnhd->ghd", w, xs).flatten(1)
        counts = w.new_tensor(w.shape[-1]) if mask is None else mask.sum(dim=1, keepdim=True)
        dispersion = 1.0 - counts * w.mean(dim=1)
        if mask is not None:
            dispersion = dispersion.masked_fill(~mask, 0.0)
        return F.normalize(proto, dim=1), dispersion

    def aggregate_clusters(
        self, features: Tensor, labels: Tensor, num_clusters: int
    ) -> tuple[Tensor, Tensor]:
        """Prototypes (C, D) of every cluster and the dispersion (N,) of every sample.

        ``labels`` (N,) with -1 for outliers (dispersion 0). Clusters are sorted
        by size and packed into padded groups of at most ``_PACK_ROWS`` member
        rows, so memory stays bounded whatever the size distribution.
        """
        if features.dim() != 2 or features.shape[1] != self.dim:
            raise ValueError(f"features must be (N, {self.dim}), found {tuple(features.shape)}")
        labels = labels.to(features.device)
        protos = torch.zeros(num_clusters, self.dim, dtype=features.dtype, device=features.device)
        dispersion = torch.zeros(features.shape[0], dtype=features.dtype, device=features.device)
        members = labels >= 0
        ids = labels[members]
        if ids.numel() == 0:
            return protos, dispersion
        order = torch.argsort(ids, stable=True)
        rows = members.nonzero().flatten()[order]  # sample rows grouped by cluster
        sizes = torch.bincount(ids, minlength=num_clusters)
        starts = torch.cumsum(sizes, 0) - sizes
        by_size = torch.argsort(sizes, stable=True).tolist()
        by_size = [c for c in by_size if sizes[c] > 0]
        i = 0
        while i < len(by_size):
            width = int(sizes[by_size[i]])
            j = i + 1
            while j < len(by_size) and int(sizes[by_size[j]]) * (j + 1 - i) <= _PACK_ROWS:
                j += 1
            group = by_size[i:j]
            width = int(sizes[group[-1]])
            index = torch.zeros(len(group), width, dtype=torch.long, device=features.device)
            mask = torch.zeros(len(group), width, dtype=torch.bool, device=features.device)
            for gi, c in enumerate(group):
                s, n = int(starts[c]), int(sizes[c])
                index[gi, :n] = rows[s : s + n]
                mask[gi, :n] = True
            p, d = self.aggregate(features[index], mask)
            protos[torch.tensor(group, device=features.device)] = p
            dispersion[index[mask]] = d[mask]
            i = j
        return protos, dispersion

    def _check(self, x: Tensor) -> None:
        if not isinstance(x, Tensor) or x.dim() != 3 or x.shape[-1] != self.dim:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"expected groups of shape (G, n, {self.dim}), found {shape}")
        if x.shape[1] == 0:
            raise ValueError("a group needs at least one member, found 0")
