"""k-reciprocal re-ranking of query-gallery distances (Zhong et al., CVPR 2017).

Re-ranking replaces each distance by a blend of it and the Jaccard distance of
the two images' k-reciprocal neighbourhoods over the union of queries and
gallery, so a gallery image that shares a query's neighbours moves up even when
its own distance is large. The neighbourhood pieces are `unreid.neighbours`'s
(shared with the pseudo-label Jaccard distance); everything here stays at
O(N * k) memory plus one chunk of rows, so it scales to MSMT17's test split.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import scipy.sparse as sp
import torch

from unreid.evaluation.distances import (
    Features,
    as_features,
    check_chunk,
    check_same_dim,
    distance_chunks,
    squared_norms,
)
from unreid.neighbours import (
    ambiguous_rows,
    expanded_pairs,
    query_expansion,
    reciprocal_sets,
    sort_candidates,
)

_PAIR_CHUNK = 1 << 22  # Jaccard (query, gallery) contributions summed at once
_EXTRA_CANDIDATES = 8  # beyond the depth, to detect ties at the cut-off


def _union_rows(
    q: torch.Tensor, g: torch.Tensor, chunk_size: int
) -> Iterator[tuple[int, torch.Tensor]]:
    """Squared Euclidean distances of the union [q; g] to itself, a block of rows at a time."""
    nq, n = q.shape[0], q.shape[0] + g.shape[0]
    sq = torch.cat((squared_norms(q), squared_norms(g)))
    for r0 in range(0, n, chunk_size):
        r1 = min(n, r0 + chunk_size)
        rows = torch.cat((q[r0 : min(r1, nq)], g[max(0, r0 - nq) : max(0, r1 - nq)]))
        dist = torch.empty((r1 - r0, n), dtype=torch.float32, device=q.device)
        dist[:, :nq] = torch.addmm(sq[r0:r1, None] + sq[None, :nq], rows, q.T, alpha=-2.0)
        dist[:, nq:] = torch.addmm(sq[r0:r1, None] + sq[None, nq:], rows, g.T, alpha=-2.0)
        yield r0, dist.clamp_(min=0.0)


def _neighbours(
    q: torch.Tensor, g: torch.Tensor, depth: int, chunk_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """(N, depth) ranking of the union (self first, then distance, then index) and row maxima.

    The reference argsorts each full row; keeping only the first ``depth`` columns
    (via topk, re-sorted, with a full stable sort where a tie crosses the cut-off)
    gives the same sets while holding O(N * depth).
    """
    n = q.shape[0] + g.shape[0]
    depth = min(depth, n)
    cand = min(n, depth + _EXTRA_CANDIDATES)
    ranks = np.empty((n, depth), dtype=np.int64)
    row_max = np.empty(n, dtype=np.float32)
    for r0, dist in _union_rows(q, g, chunk_size):
        rows = torch.arange(dist.shape[0], device=dist.device)
        row_max[r0 : r0 + dist.shape[0]] = dist.max(1).values.cpu().numpy()
        dist[rows, rows + r0] = -1.0  # self first, whatever rounding says
        vals, idx = torch.topk(dist, cand, dim=1, largest=False, sorted=True)
        vals, idx = sort_candidates(vals.cpu().numpy(), idx.cpu().numpy(), descending=False)
        ranks[r0 : r0 + dist.shape[0]] = idx[:, :depth]
        if cand < n:
            ambiguous = ambiguous_rows(vals, depth)
            for a in ambiguous:
                full = dist[int(a)].cpu().numpy()
                ranks[r0 + a] = np.argsort(full, kind="stable")[:depth]
    return ranks, row_max


def _pair_distances(
    x_sq: torch.Tensor, x: torch.Tensor, rows: np.ndarray, cols: np.ndarray
) -> np.ndarray:
    """Squared Euclidean distances of the listed (row, col) pairs of the union, float32."""
    out = np.empty(rows.size, dtype=np.float32)
    step = 1 << 14
    for s in range(0, rows.size, step):
        r = torch.from_numpy(rows[s : s + step]).to(x.device)
        c = torch.from_numpy(cols[s : s + step]).to(x.device)
        dots = (x[r] * x[c]).sum(1)
        out[s : s + step] = (x_sq[r] + x_sq[c] - 2.0 * dots).clamp_(min=0.0).cpu().numpy()
    return out


def _check_rerank_args(k1: int, k2: int, lambda_value: float, n: int) -> None:
    for name, val in (("k1", k1), ("k2", k2)):
        if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < 1:
            raise ValueError(f"{name} must be an integer >= 1, found {val!r}")
    if k1 >= n:
        raise ValueError(f"k1 must be smaller than the number of query + gallery images {n}")
    if k2 > n:
        raise ValueError(f"k2 must be at most the number of query + gallery images {n}")
    if not 0.0 <= float(lambda_value) <= 1.0:
        raise ValueError(f"lambda_value must be in [0, 1], found {lambda_value!r}")


def rerank_chunks(
    qf: Features,
    gf: Features,
    *,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    chunk_size: int | None = None,
    device: torch.device | str | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (first row, float32 (c, G) re-ranked distances) for chunks of query rows.

    See `rerank_distances` for the definition. Memory: the O(N * k) neighbour
    lists and sparse weights of the N = Q + G union, plus one chunk; the union's
    dense N x N distances are only ever seen a block of rows at a time.
    """
    q = as_features(qf, "qf", device)
    g = as_features(gf, "gf", q.device)
    check_same_dim(q, g)
    nq, ng = q.shape[0], g.shape[0]
    n = nq + ng
    _check_rerank_args(k1, k2, lambda_value, n)
    k1, k2 = int(k1), int(k2)
    chunk = check_chunk(chunk_size, n)
    half = int(np.around(k1 / 2.0))  # numpy round half to even, as the reference
    ranks, row_max = _neighbours(q, g, max(k1 + 1, half + 1, k2), chunk)
    # R*(i) of every union item: the reference's 2/3 test is strict
    rows, cols = expanded_pairs(
        reciprocal_sets(ranks, k1 + 1), reciprocal_sets(ranks, half + 1), strict=True
    )
    x = torch.cat((q, g))
    x_sq = squared_norms(x)
    d = _pair_distances(x_sq, x, rows, cols)
    scale = np.where(row_max > 0, row_max.astype(np.float64) ** 2, 1.0)
    w = np.exp(-(d.astype(np.float64) ** 2) / scale[rows])
    w /= np.bincount(rows, weights=w, minlength=n)[rows]
    v = sp.csr_matrix((w, (rows, cols)), shape=(n, n))
    v = query_expansion(v, ranks, k2).tocsr()
    del x, x_sq, ranks, rows, cols, d, w
    v.sum_duplicates()
    gal = v[nq:].tocsc()  # gallery rows, grouped by column
    gal.sort_indices()
    col_ptr, gal_rows, gal_vals = gal.indptr, gal.indices.astype(np.int64), gal.data
    for r0, dist in distance_chunks(q, g, chunk):
        c = dist.shape[0]
        orig = dist.cpu().numpy().astype(np.float64) ** 2 / scale[r0 : r0 + c, None]
        qv = v[r0 : r0 + c]
        q_row = np.repeat(np.arange(c, dtype=np.int64), np.diff(qv.indptr))
        q_col, q_val = qv.indices.astype(np.int64), qv.data
        reps = col_ptr[q_col + 1] - col_ptr[q_col]  # gallery partners per query entry
        ends = np.cumsum(reps)
        shared = np.zeros(c * ng, dtype=np.float64)
        e0 = 0
        while e0 < q_col.size:  # sum of minima over shared columns, in bounded pieces
            done = ends[e0 - 1] if e0 else 0
            e1 = max(e0 + 1, int(np.searchsorted(ends, done + _PAIR_CHUNK, side="right")))
            rep = reps[e0:e1]
            a = np.repeat(np.arange(e0, e1), rep)
            b = np.repeat(col_ptr[q_col[e0:e1]] - (np.cumsum(rep) - rep), rep) + np.arange(a.size)
            keys = q_row[a] * ng + gal_rows[b]
            shared += np.bincount(keys, weights=np.minimum(q_val[a], gal_vals[b]), minlength=c * ng)
            e0 = e1
        shared = shared.reshape(c, ng)
        jaccard = 1.0 - shared / (2.0 - shared)
        final = (1.0 - lambda_value) * jaccard + lambda_value * orig
        yield r0, final.astype(np.float32)


def rerank_distances(
    qf: Features,
    gf: Features,
    *,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    chunk_size: int | None = None,
    device: torch.device | str | None = None,
) -> np.ndarray:
    """(Q, G) float32 k-reciprocal re-ranked distances (Zhong et al., CVPR 2017).

    As the widely used ``re_ranking(q_g, q_q, g_g, k1, k2, lambda_value)`` of the
    reference code (zhunzhong07/person-re-ranking as kept in torchreid's
    ``utils/rerank.py``), fed this package's squared Euclidean distances d:

    * O = d**2 over the union of queries and gallery (N = Q + G), each row divided
      by its maximum over all N columns (the reference divides columns, then
      transposes, which is the same for symmetric d);
    * ranking: self first, then O, then index; R(i) = k-reciprocal neighbours among
      the first k1 + 1 entries; R*(i) adds R(c, round(k1/2)) (numpy's half-to-even
      round, first round(k1/2) + 1 entries) for each c in R(i) whose set shares
      strictly more than 2/3 of its members with R(i);
    * V[i, j] = exp(-O[i, j]) normalised over j in R*(i); for k2 > 1, V[i] is the
      mean of V over i's first k2 ranking entries (self included);
    * Jaccard = 1 - m / (2 - m), m = sum_l min(V[q, l], V[g, l]);
    * final = (1 - lambda) * Jaccard + lambda * O[q, g], the query-gallery block.

    Dense output for convenience; `unreid.evaluation.streaming.evaluate_streaming`
    with ``rerank=True`` consumes
    the same values chunk by chunk instead.
    """
    q = as_features(qf, "qf", device)
    g = as_features(gf, "gf", q.device)
    out = np.empty((q.shape[0], g.shape[0]), dtype=np.float32)
    for r0, block in rerank_chunks(
        q, g, k1=k1, k2=k2, lambda_value=lambda_value, chunk_size=chunk_size
    ):
        out[r0 : r0 + block.shape[0]] = block
    return out
