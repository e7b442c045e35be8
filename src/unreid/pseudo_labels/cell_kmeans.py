"""k-means into many small cells, and nearest-centroid assignment, in O(N sqrt(nlist) D).

The IVF cells of ``whitened_ivf.py`` hold ~32 rows each, so their number grows
with N: 31,250 cells at a million rows. Assigning every row to its nearest of
them by brute force is N x nlist x D, quadratic in N (16 TFLOP at 1M x 256, and
as much again for each k-means round on the training rows), which is what kept a
million rows from clustering in minutes on a CPU.

Here the centroids are themselves grouped into ~sqrt(nlist) coarse cells (a small
k-means over the centroids' directions). A row scores the coarse centroids and is
compared only with the centroids of its ``COARSE_PROBES`` nearest coarse cells,
taken coarse cell by coarse cell (the rows probing one coarse cell against its
centroids, one matrix product each). The search is approximate: a row's best
centroid may sit in a coarse cell it does not probe. At 100k x 256 (3,125 cells of
55 coarse ones), probing 8 coarse cells per row lowered recall@6 of the candidates
finally found from 0.993 (brute-force assignment) to 0.978, and 16 gave 0.990;
taking one coarse cell per row and its neighbours' centroids instead gave 0.957.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

DIRECT_BELOW = 2048  # centroids scored directly (one level) below this many
COARSE_PROBES = 16  # coarse cells (a row's nearest) whose centroids it is compared with
_CHUNK_ELEMS = 1 << 24  # score cells held at once (64 MB as float32)


def _direct(z: torch.Tensor, cent: torch.Tensor) -> torch.Tensor:
    """argmax over all centroids of z @ cent.T, in row chunks."""
    step = max(1, _CHUNK_ELEMS // max(1, cent.shape[0]))
    return torch.cat([(z[i : i + step] @ cent.T).argmax(dim=1) for i in range(0, len(z), step)])


class NearestCentroid:
    """Each row's centroid of largest inner product: brute force below DIRECT_BELOW
    centroids, else through the coarse cells (built once, reused for every chunk)."""

    def __init__(self, cent: torch.Tensor, seed: int = 0) -> None:
        self.cent = cent
        nlist = cent.shape[0]
        if nlist < DIRECT_BELOW:
            return
        nc = math.isqrt(nlist)
        self.coarse = kmeans(F.normalize(cent, dim=1), nc, spherical=True, seed=seed, iters=10)
        owner = _direct(cent, self.coarse).numpy()  # each centroid's coarse cell
        self.by_owner = np.argsort(owner, kind="stable")
        self.bounds = np.searchsorted(owner[self.by_owner], np.arange(nc + 1))

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        if self.cent.shape[0] < DIRECT_BELOW:
            return _direct(z, self.cent)
        nc = len(self.bounds) - 1
        m = min(COARSE_PROBES, nc)
        step = max(1, _CHUNK_ELEMS // nc)
        near = torch.cat([torch.topk(z[i : i + step] @ self.coarse.T, m, dim=1).indices
                          for i in range(0, len(z), step)]).numpy()  # fmt: skip
        # inverted lists: the rows that probe each coarse cell
        flat = np.argsort(near.ravel(), kind="stable")
        probing = flat // m
        starts = np.searchsorted(near.ravel()[flat], np.arange(nc + 1))
        best = torch.full((len(z),), -torch.inf, dtype=z.dtype)
        out = torch.zeros(len(z), dtype=torch.long)
        for h in range(nc):
            members = torch.from_numpy(self.by_owner[self.bounds[h] : self.bounds[h + 1]])
            rows = torch.from_numpy(probing[starts[h] : starts[h + 1]])
            if rows.numel() == 0 or members.numel() == 0:
                continue
            vals, at = (z[rows] @ self.cent[members].T).max(dim=1)
            better = vals > best[rows]
            best[rows[better]] = vals[better]
            out[rows[better]] = members[at[better]]
        return out


def kmeans(x: torch.Tensor, k: int, *, spherical: bool, seed: int, iters: int) -> torch.Tensor:
    """Lloyd's k-means by inner-product assignment, from k distinct rows drawn with `seed`.

    `spherical` renormalises the centroids each round (cosine geometry); else they
    are the members' means. A centroid left with no member takes half of the largest
    cluster (`_split_largest`).
    """
    n = x.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"k-means needs 1 <= k <= rows, found k={k} for {n} rows")
    gen = torch.Generator().manual_seed(seed)
    cent = x[torch.randperm(n, generator=gen)[:k]].clone()
    for it in range(iters):
        owner = NearestCentroid(cent, seed + it + 1)(x)
        sums = torch.zeros_like(cent).index_add_(0, owner, x)
        counts = torch.bincount(owner, minlength=k)
        kept = counts > 0
        cent[kept] = sums[kept] / counts[kept, None].to(x.dtype)
        _split_largest(cent, counts, gen)
        if spherical:
            cent = F.normalize(cent, dim=1)
    return cent


def _split_largest(cent: torch.Tensor, counts: torch.Tensor, gen: torch.Generator) -> None:
    """Give each empty centroid half of the largest cluster, as faiss's k-means does: the
    two copies are nudged apart, so the next round splits its members between them."""
    sizes = counts.clone()
    for j in torch.nonzero(sizes == 0).flatten().tolist():
        c = int(sizes.argmax())
        if sizes[c] < 2:
            return
        nudge = (
            1e-3 * cent[c].norm() * torch.randn(cent.shape[1], generator=gen) / cent.shape[1] ** 0.5
        )
        cent[j], cent[c] = cent[c] + nudge, cent[c] - nudge
        sizes[j] = sizes[c] // 2
        sizes[c] -= sizes[j]
