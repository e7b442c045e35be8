"""k-reciprocal Jaccard distance between L2-normalised features.

Clustering raw cosine distances merges people who merely wear similar clothes;
the k-reciprocal encoding of Zhong et al. (CVPR 2017, "Re-ranking person
re-identification with k-reciprocal encoding") compares *neighbourhoods*
instead, which is what Cluster Contrast feeds to DBSCAN each epoch.

Definitions (``variant="paper"``), with d(x, y) = 2 - 2<x, y>:

* N(p, k): p itself followed by its k nearest neighbours. p is always rank 0;
  the others are ordered by distance, ties broken by the lower index.
* R(p, k) = {g in N(p, k) : p in N(g, k)}.
* R*(p, k1) = R(p, k1) united with R(q, k1/2) for every q in R(p, k1) with
  |R(q, k1/2) & R(p, k1)| >= 2/3 |R(q, k1/2)|; k1/2 is rounded half up
  (MATLAB ``round``, as in the authors' release).
* V[p, g] = softmax over g in R*(p) of -d(p, g); 0 outside R*(p).
* Local query expansion: V[p] <- mean of V over the first k2 entries of p's
  ranking (p and its k2 - 1 nearest neighbours).
* d_J(p, g) = 1 - sum_j min(V[p,j], V[g,j]) / sum_j max(V[p,j], V[g,j]),
  clipped to [0, 1].

``variant="cluster_contrast"`` reproduces alibaba/cluster-contrast-reid
(``clustercontrast/utils/faiss_rerank.py``, ``compute_jaccard_distance``), as read
from its source:

* the index search returns ``k1`` columns *including* the point itself, and
  ``k_reciprocal_neigh`` slices ``[:k1+1]`` of that, so the forward set for k1
  is p + k1 - 1 neighbours (the half set is sliced from the same k1 columns
  and gets the paper's p + round(k1/2) neighbours);
* the half size is ``int(np.around(k1/2))`` -- round half to even (k1 = 5 -> 2);
* the 2/3 test is strict: ``len(intersection) > 2/3 * len(half set)``;
* query expansion reads ``initial_rank[i, :k2]`` of the same k1-column
  ranking, so it averages min(k2, k1) rows;
* the distance is written as ``1 - m / (2 - m)`` (m = sum of minima), which is
  the paper's formula because every row of V sums to 1; negatives are set to 0.
  Here both variants use sum(max) = |V_p| + |V_g| - m with the actual row sums.

Both variants put p itself at rank 0 and break distance ties by index; the
reference takes faiss's order as is, which differs only for exact duplicates.

The result is a dense (N, N) float32 matrix; the sparse internals (kNN lists,
COO weights, column-wise pair sums) keep memory at O(N * k) until that point.
The ranking, reciprocal sets and query expansion are `unreid.neighbours`'s, shared
with the re-ranking of `unreid.evaluation.rerank`.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch

from unreid.neighbours import (
    as_unit_features,
    expanded_pairs,
    query_expansion,
    ranked_neighbours,
    reciprocal_sets,
)

Variant = Literal["paper", "cluster_contrast"]
VARIANTS: tuple[str, ...] = ("paper", "cluster_contrast")

_PAIR_CHUNK = 1 << 22  # (row, row) pairs generated at once in the Jaccard sum


def half_size(k1: int, variant: Variant) -> int:
    """Neighbour count for the half-size reciprocal sets: round(k1/2) per variant."""
    if variant == "cluster_contrast":
        return int(np.around(k1 / 2))  # numpy: half to even
    return int(np.floor(k1 / 2 + 0.5))  # MATLAB round: half up


def softmax_weights(x: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> sp.csr_matrix:
    """V: row-wise softmax of -d(p, g) over each p's expanded set."""
    n = x.shape[0]
    dots = np.empty(rows.shape[0], dtype=np.float64)
    step = 1 << 14
    for s0 in range(0, rows.shape[0], step):
        r, c = rows[s0 : s0 + step], cols[s0 : s0 + step]
        dots[s0 : s0 + step] = np.einsum("ij,ij->i", x[r], x[c], dtype=np.float64)
    w = np.exp(-(2.0 - 2.0 * dots))
    w /= np.bincount(rows, weights=w, minlength=n)[rows]
    return sp.csr_matrix((w, (rows, cols)), shape=(n, n))


def jaccard_from_weights(v: sp.csr_matrix) -> np.ndarray:
    """Dense d_J from sparse V, summing minima only where two rows share a column.

    For every non-zero V[p, j] and every row g >= p that is non-zero in column j,
    min(V[p, j], V[g, j]) is added to cell (p, g). Walking V row by row keeps the
    scatter cache-local; the upper triangle is then mirrored and turned into
    1 - sum(min) / sum(max) with sum(max) = |V_p| + |V_g| - sum(min).
    """
    n = v.shape[0]
    csr = v.tocsr()
    csr.sum_duplicates()
    csr.sort_indices()
    p_of = np.repeat(np.arange(n, dtype=np.int64), np.diff(csr.indptr))
    j_of = csr.indices.astype(np.int64)
    csc = csr.tocsc()
    csc.sort_indices()
    col_rows, col_vals = csc.indices.astype(np.int64), csc.data
    pos = np.empty(p_of.size, dtype=np.int64)  # where each CSR entry sits in the CSC arrays
    pos[np.lexsort((p_of, j_of))] = np.arange(p_of.size)
    reps = csc.indptr[j_of + 1] - pos  # partners g >= p in the same column, p included
    ends = np.cumsum(reps)
    acc = torch.zeros(n * n, dtype=torch.float32)
    e0 = 0
    while e0 < p_of.size:
        done = ends[e0 - 1] if e0 else 0
        e1 = max(e0 + 1, int(np.searchsorted(ends, done + _PAIR_CHUNK, side="right")))
        rep = reps[e0:e1]
        a = np.repeat(np.arange(e0, e1), rep)
        b = np.repeat(pos[e0:e1] - (np.cumsum(rep) - rep), rep) + np.arange(a.size)
        keys = torch.from_numpy(p_of[a] * n + col_rows[b])
        mins = torch.from_numpy(np.minimum(csr.data[a], col_vals[b]).astype(np.float32))
        acc.index_add_(0, keys, mins)
        e0 = e1
    out = acc.numpy().reshape(n, n)
    # row sums from the same float32 sums as the minima (min(v, v) = v), so d_J(p, p) is 0
    rowsum = out.diagonal().copy()
    tile = 1024
    for i0 in range(0, n, tile):
        i1 = min(n, i0 + tile)
        diag = out[i0:i1, i0:i1]
        diag += np.triu(diag, 1).T
        for j0 in range(i1, n, tile):
            j1 = min(n, j0 + tile)
            out[j0:j1, i0:i1] = out[i0:i1, j0:j1].T
    denom = np.empty((min(n, tile), n), dtype=np.float32)
    for i0 in range(0, n, tile):
        i1 = min(n, i0 + tile)
        m, den = out[i0:i1], denom[: i1 - i0]
        np.add(rowsum[i0:i1, None], rowsum[None, :], out=den)
        den -= m  # sum of maxima
        np.divide(m, den, out=m)
        np.subtract(1.0, m, out=m)
        np.clip(m, 0.0, 1.0, out=m)
    return out


def jaccard_distance(
    features: np.ndarray | torch.Tensor, k1: int = 30, k2: int = 6, variant: Variant = "paper"
) -> np.ndarray:
    """(N, N) float32 k-reciprocal Jaccard distance; see the module docstring for the definition.

    Args:
        features: (N, D) L2-normalised features (numpy or torch).
        k1: neighbourhood size of the reciprocal sets, 1 <= k1 < N.
        k2: rows averaged by local query expansion, 1 <= k2 <= N.
        variant: ``"paper"`` or ``"cluster_contrast"`` (the reference code's off-by-ones).
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, found {variant!r}")
    x = as_unit_features(features)
    n = x.shape[0]
    k1, k2 = check_k(k1, k2, n)
    cc = variant == "cluster_contrast"
    full_size = k1 if cc else k1 + 1
    half = half_size(k1, variant) + 1
    qe = min(k2, k1) if cc else k2
    ranks = ranked_neighbours(x, max(full_size, half, qe))
    rows, cols = expanded_pairs(reciprocal_sets(ranks, full_size), reciprocal_sets(ranks, half), cc)
    v = softmax_weights(x, rows, cols)
    return jaccard_from_weights(query_expansion(v, ranks, qe))


def check_k(k1: int, k2: int, n: int) -> tuple[int, int]:
    """Validate the neighbourhood sizes against N (shared by the dense and sparse paths)."""
    for name, val in (("k1", k1), ("k2", k2)):
        if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < 1:
            raise ValueError(f"{name} must be an integer >= 1, found {val!r}")
    if k1 >= n:
        raise ValueError(f"k1 must be smaller than the number of samples N={n}, found k1={k1}")
    if k2 > n:
        raise ValueError(f"k2 must be at most the number of samples N={n}, found k2={k2}")
    return int(k1), int(k2)
