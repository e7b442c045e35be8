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
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch

Variant = Literal["paper", "cluster_contrast"]
VARIANTS: tuple[str, ...] = ("paper", "cluster_contrast")

_UNIT_NORM_TOL = 1e-3
_SIM_CHUNK_ELEMS = 1 << 24  # similarity entries held at once while ranking
_PAIR_CHUNK = 1 << 22  # (row, row) pairs generated at once in the Jaccard sum


def as_unit_features(features: np.ndarray | torch.Tensor, name: str = "features") -> np.ndarray:
    """Validate (N, D) L2-normalised features and return them as C-contiguous float32.

    The distance 2 - 2<x, y> only equals the squared Euclidean distance for unit
    vectors, so un-normalised input would silently change every neighbourhood.
    """
    if isinstance(features, torch.Tensor):
        arr = features.detach().cpu()
        if arr.is_complex() or arr.dtype == torch.bool:
            raise ValueError(f"{name} must be a real numeric tensor, found dtype {arr.dtype}")
        arr = arr.to(torch.float32).numpy()
    else:
        arr = np.asarray(features)
        if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
            raise ValueError(f"{name} must be a real numeric array, found dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N, D), found shape {tuple(arr.shape)}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} must be non-empty, found shape {tuple(arr.shape)}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    # float32 squared norms (rounding ~1e-7 * sqrt(D), far inside the tolerance) in
    # one pass; NaN / inf anywhere in a row shows up in its sum
    sq = np.einsum("ij,ij->i", arr, arr)
    if not np.isfinite(sq).all() and not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    norms = np.sqrt(sq.astype(np.float64))
    worst = int(np.argmax(np.abs(norms - 1.0)))
    if abs(norms[worst] - 1.0) > _UNIT_NORM_TOL:
        raise ValueError(
            f"{name} rows must be L2-normalised (norm 1 within {_UNIT_NORM_TOL}), "
            f"found norm {norms[worst]:.6f} at row {worst}"
        )
    return arr


def half_size(k1: int, variant: Variant) -> int:
    """Neighbour count for the half-size reciprocal sets: round(k1/2) per variant."""
    if variant == "cluster_contrast":
        return int(np.around(k1 / 2))  # numpy: half to even
    return int(np.floor(k1 / 2 + 0.5))  # MATLAB round: half up


def ranked_neighbours(x: np.ndarray, depth: int) -> np.ndarray:
    """(N, depth) int64 ranking: column 0 is the point itself, then by distance, then index.

    topk alone orders ties arbitrarily, so each row's candidates are re-sorted by
    (similarity desc, index asc); when the tie at the cut-off may extend past the
    candidates, that row falls back to a full stable sort.
    """
    n = x.shape[0]
    depth = min(depth, n)
    cand = min(n, depth + 8)
    xt = torch.from_numpy(x)
    out = np.empty((n, depth), dtype=np.int64)
    chunk = max(1, _SIM_CHUNK_ELEMS // n)
    for r0 in range(0, n, chunk):
        r1 = min(n, r0 + chunk)
        sims = xt[r0:r1] @ xt.T
        rows = torch.arange(r1 - r0)
        sims[rows, rows + r0] = float("inf")  # self first, whatever rounding says
        vals, idx = torch.topk(sims, cand, dim=1, largest=True, sorted=True)
        vals, idx = vals.numpy(), idx.numpy()
        order = np.lexsort((idx, -vals), axis=-1)
        vals = np.take_along_axis(vals, order, axis=1)
        idx = np.take_along_axis(idx, order, axis=1)
        out[r0:r1] = idx[:, :depth]
        if cand < n:
            ambiguous = np.nonzero(vals[:, depth - 1] == vals[:, cand - 1])[0]
            if ambiguous.size:
                full = -sims[torch.from_numpy(ambiguous)].numpy()
                out[r0 + ambiguous] = np.argsort(full, axis=1, kind="stable")[:, :depth]
    return out


def reciprocal_sets(ranks: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """R(p) from the first ``size`` ranking entries (self included).

    Returns the forward list (N, size) and a mask of which entries are reciprocal
    (p appears among their own first ``size`` entries).
    """
    n = ranks.shape[0]
    fwd = np.ascontiguousarray(ranks[:, :size])
    mask = np.empty(fwd.shape, dtype=bool)
    chunk = max(1, (1 << 22) // max(1, size * size))
    for r0 in range(0, n, chunk):
        r1 = min(n, r0 + chunk)
        back = ranks[fwd[r0:r1], :size]  # (c, size, size)
        mask[r0:r1] = (back == np.arange(r0, r1)[:, None, None]).any(axis=2)
    return fwd, mask


def expanded_pairs(
    full: tuple[np.ndarray, np.ndarray], half: tuple[np.ndarray, np.ndarray], strict: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique (p, g) pairs with g in R*(p), as two int64 arrays."""
    f_idx, f_mask = full
    h_idx, h_mask = half
    n, m = f_idx.shape
    mh = h_idx.shape[1]
    keys = []
    chunk = max(1, (1 << 22) // max(1, m * m * mh))
    for r0 in range(0, n, chunk):
        r1 = min(n, r0 + chunk)
        fi, fm = f_idx[r0:r1], f_mask[r0:r1]
        members = np.where(fm, fi, -1)  # R(p), padded with -1
        hi, hm = h_idx[fi], h_mask[fi]  # half sets of every forward candidate q
        inside = (hi[..., None] == members[:, None, None, :]).any(axis=3) & hm
        inter = inside.sum(axis=2)
        count = hm.sum(axis=2)
        ok = 3 * inter > 2 * count if strict else 3 * inter >= 2 * count
        ok &= fm
        base = np.arange(r0, r1)[:, None] * n
        keys.append((base + fi)[fm])
        sel = ok[..., None] & hm
        keys.append((base[:, :, None] + hi)[sel])
    flat = np.unique(np.concatenate(keys))
    return flat // n, flat % n


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


def query_expansion(v: sp.csr_matrix, ranks: np.ndarray, k2: int) -> sp.csr_matrix:
    """Average each row of V over the first k2 entries of its ranking (self included)."""
    if k2 == 1:
        return v
    n = v.shape[0]
    cols = ranks[:, :k2]
    q = sp.csr_matrix(
        (
            np.full(cols.size, 1.0 / cols.shape[1]),
            (np.repeat(np.arange(n), cols.shape[1]), cols.ravel()),
        ),
        shape=(n, n),
    )
    return (q @ v).tocsr()


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
