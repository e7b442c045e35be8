"""Exact k-reciprocal Jaccard distance as a sparse matrix, in O(N * k) memory.

``jaccard.jaccard_distance`` returns a dense (N, N) matrix: 0.7 GB at Market
size, 4 GB for MSMT17, 160 GB for 200k images. Yet d_J(p, g) < 1 only when the
query-expanded rows V[p] and V[g] share a column, and DBSCAN only ever looks at
pairs closer than eps < 1. This module computes the *same* distance (both
variants, same definitions; see ``jaccard.py``) only for those pairs:

1. ranked kNN lists from ``knn.knn_search`` (the only O(N^2 D) step);
2. reciprocal sets as ``A.multiply(A.T)`` of the sparse top-k relation;
3. the 2/3 test for every q in R(p) from the sparse product ``R @ H.T`` (the
   intersection counts |R(p) & R(q, k1/2)|), the expanded sets as ``R + O @ H``;
4. softmax weights on that pattern, similarities taken from the kNN lists
   (computed only for expansion members outside them); query expansion as the
   sparse product ``Q @ V``;
5. the sum of minima over shared columns, for pairs g > p, row block by row
   block: each V entry (p, j) meets the entries of column j at rows > p, and
   the minima are summed per pair either in a dense (rows x N) buffer (Market
   size) or by sorting each row's contributions (large N, where a row reaches
   a few hundred partners out of a million); each finished block is turned
   into distances and filtered before the next starts.

Missing entries of the result mean distance 1 (or > ``max_distance``). The
diagonal and any other zero distance (duplicate samples) are stored as explicit
zeros, which scipy keeps as long as the matrix is not re-built by arithmetic;
sklearn's DBSCAN with ``metric="precomputed"`` treats exactly the stored entries
as candidate neighbours, so the labels equal those from the dense matrix for
any eps < 1 (eps <= ``max_distance``).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from unreid.pseudo_labels.jaccard import VARIANTS, Variant, as_unit_features, check_k, half_size
from unreid.pseudo_labels.knn import KNN_METHODS, KnnMethod, knn_search

_ROW_BLOCK = 1 << 16  # rows per sparse-product block in the expansion step
_PAIR_CHUNK = 1 << 22  # (entry, partner) contributions generated at once
_BUFFER_ELEMS = 1 << 24  # float cells of the dense per-block accumulation buffer
# the dense buffer is used while N <= this x (contributions per row): scanning a
# cell costs ~1/16 of sorting a contribution (measured at N = 13k and 200k)
_DENSE_COST_RATIO = 16.0


def jaccard_depth(k1: int, k2: int, variant: Variant) -> int:
    """Ranking entries (self included) the Jaccard distance reads for these settings."""
    cc = variant == "cluster_contrast"
    full_size = k1 if cc else k1 + 1
    qe = min(k2, k1) if cc else k2
    return max(full_size, half_size(k1, variant) + 1, qe)


def _top_relation(idx: np.ndarray, size: int, n: int) -> sp.csr_matrix:
    """Binary (N, N) matrix with row p = the first ``size`` ranking entries of p."""
    cols = idx[:, :size]
    indptr = np.arange(0, cols.size + 1, size, dtype=np.int64)
    mat = sp.csr_matrix((np.ones(cols.size, dtype=np.int32), cols.ravel(), indptr), shape=(n, n))
    mat.sort_indices()
    return mat


def _reciprocal(idx: np.ndarray, size: int, n: int) -> sp.csr_matrix:
    """R(p, size - 1) as a binary matrix: g in p's top ``size`` and p in g's."""
    top = _top_relation(idx, size, n)
    rec = top.multiply(top.T).tocsr()
    rec.sort_indices()
    return rec


def expanded_pattern(idx: np.ndarray, k1: int, variant: Variant) -> sp.csr_matrix:
    """Binary (N, N) CSR whose row p is R*(p, k1), the support of V[p]."""
    n = idx.shape[0]
    cc = variant == "cluster_contrast"
    rec = _reciprocal(idx, k1 if cc else k1 + 1, n)
    half = _reciprocal(idx, half_size(k1, variant) + 1, n)
    half_t = half.T.tocsr()
    half_count = np.diff(half.indptr)
    blocks = []
    for r0 in range(0, n, _ROW_BLOCK):
        rb = rec[r0 : min(n, r0 + _ROW_BLOCK)]
        # inter[p, q] = |R(p) & R(q, k1/2)| at every q in R(p) (>= 1: q is in both)
        inter = (rb @ half_t).multiply(rb).tocsr()
        inter.sum_duplicates()
        cnt = half_count[inter.indices]
        ok = 3 * inter.data > 2 * cnt if cc else 3 * inter.data >= 2 * cnt
        accept = sp.csr_matrix(
            (ok.astype(np.int32), inter.indices, inter.indptr), shape=inter.shape
        )
        accept.eliminate_zeros()
        blocks.append((rb + accept @ half).tocsr())
    pattern = sp.vstack(blocks, format="csr") if len(blocks) > 1 else blocks[0]
    pattern.sum_duplicates()
    pattern.sort_indices()
    return pattern


def _pattern_similarities(
    x: np.ndarray, pattern: sp.csr_matrix, sims: np.ndarray, idx: np.ndarray
) -> np.ndarray:
    """<x_p, x_g> for every stored (p, g): from the kNN lists, else computed (float64)."""
    n = x.shape[0]
    rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(pattern.indptr))
    keys = rows * n + pattern.indices
    knn_keys = (np.arange(n, dtype=np.int64)[:, None] * n + idx).ravel()
    order = np.argsort(knn_keys, kind="stable")
    sorted_keys = knn_keys[order]
    at = np.minimum(np.searchsorted(sorted_keys, keys), sorted_keys.size - 1)
    found = sorted_keys[at] == keys
    out = np.empty(keys.size, dtype=np.float64)
    out[found] = sims.ravel()[order[at[found]]]
    miss = np.nonzero(~found)[0]
    step = 1 << 10  # small gathers stay in cache
    for s0 in range(0, miss.size, step):
        m = miss[s0 : s0 + step]
        out[m] = np.einsum("ij,ij->i", x[rows[m]], x[pattern.indices[m]], dtype=np.float64)
    return out


def _weights(
    x: np.ndarray, pattern: sp.csr_matrix, sims: np.ndarray, idx: np.ndarray
) -> sp.csr_matrix:
    """V: row-wise softmax of -d(p, g) = -(2 - 2<x_p, x_g>) over the pattern."""
    s = _pattern_similarities(x, pattern, sims, idx)
    w = np.exp(-(2.0 - 2.0 * s))
    counts = np.diff(pattern.indptr)
    w /= np.repeat(np.add.reduceat(w, pattern.indptr[:-1]), counts)
    return sp.csr_matrix((w, pattern.indices, pattern.indptr), shape=pattern.shape)


def _query_expansion(v: sp.csr_matrix, idx: np.ndarray, qe: int) -> sp.csr_matrix:
    """Mean of V over each row's first ``qe`` ranking entries, as the product Q @ V."""
    if qe == 1:
        return v
    n = v.shape[0]
    q = sp.csr_matrix(
        (
            np.full(n * qe, 1.0 / qe),
            idx[:, :qe].ravel(),
            np.arange(0, n * qe + 1, qe, dtype=np.int64),
        ),
        shape=(n, n),
    )
    out = (q @ v).tocsr()
    out.sort_indices()
    return out


@dataclass
class _PairPlan:
    """V's entries paired with the same column's entries in later rows.

    Every CSR entry (p, j) meets the entries of column j at rows g > p; those
    are contiguous in the row-sorted CSC arrays, starting at ``first[e]`` and
    ``reps[e]`` long, so a row block's contributions are one repeat and one
    near-sequential gather. ``row_work`` is the cumulative contribution count.
    """

    data: np.ndarray  # float32 CSR values of V
    row_ptr: np.ndarray  # int64 CSR indptr
    first: np.ndarray  # CSC slot of the first partner entry of each CSR entry
    reps: np.ndarray  # partners g > p of each CSR entry
    col_rows: np.ndarray  # CSC row ids
    col_vals: np.ndarray  # CSC values
    row_work: np.ndarray  # (N + 1,) cumulative contributions per row
    itype: type

    @classmethod
    def build(cls, vq: sp.csr_matrix) -> _PairPlan:
        n, nnz = vq.shape[0], vq.nnz
        data = vq.data.astype(np.float32)
        ids = sp.csr_matrix((np.arange(nnz, dtype=np.float64), vq.indices, vq.indptr), shape=(n, n))
        csc_ids = ids.tocsc()
        csc_ids.sort_indices()
        entry = csc_ids.data.astype(np.int64)
        del ids
        # 32-bit positions where they fit: the pair loop is memory-bound
        itype = np.int32 if max(nnz, _PAIR_CHUNK, n) < 2**31 - 1 else np.int64
        pos = np.empty(nnz, dtype=itype)
        pos[entry] = np.arange(nnz, dtype=itype)
        reps = csc_ids.indptr[vq.indices + 1] - pos - 1
        row_ptr = vq.indptr.astype(np.int64)
        row_work = np.zeros(n + 1, dtype=np.int64)
        counts = np.diff(row_ptr)
        np.cumsum(np.add.reduceat(reps, row_ptr[:-1]) * (counts > 0), out=row_work[1:])
        return cls(
            data=data,
            row_ptr=row_ptr,
            first=pos + 1,
            reps=reps,
            col_rows=csc_ids.indices.astype(itype),
            col_vals=data[entry],
            row_work=row_work,
            itype=itype,
        )

    def blocks(self, max_rows: int):
        """(r0, r1, rows, partners, mins) per row block of <= ``_PAIR_CHUNK`` contributions.

        ``rows`` are block-local row numbers; contributions come grouped by row.
        """
        n = self.row_ptr.size - 1
        itype = self.itype
        r0 = 0
        while r0 < n:
            r1 = int(np.searchsorted(self.row_work, self.row_work[r0] + _PAIR_CHUNK, "right")) - 1
            r1 = min(n, r0 + max_rows, max(r0 + 1, r1))
            e0, e1 = int(self.row_ptr[r0]), int(self.row_ptr[r1])
            rep = self.reps[e0:e1]
            total = int(self.row_work[r1] - self.row_work[r0])
            starts = (np.cumsum(rep) - rep).astype(itype)
            b = np.repeat(self.first[e0:e1] - starts, rep)
            b += np.arange(total, dtype=itype)
            partners = self.col_rows[b]
            mins = np.minimum(np.repeat(self.data[e0:e1], rep), self.col_vals[b])
            yield r0, r1, partners, mins
            r0 = r1


def _pair_distances(
    vq: sp.csr_matrix, max_distance: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs p < g with shared support and d_J <= max_distance, as (p, g, d float32).

    d = 1 - m / (|V_p| + |V_g| - m) with m = sum_j min(V[p, j], V[g, j]), since
    sum(max) = |V_p| + |V_g| - m. The per-pair sums are reduced one of two ways,
    picked by a cost estimate:

    * a dense float32 buffer of (rows x N) cells per row block, scattered into
      with ``index_add_`` and scanned once: cheap while a row's contributions
      outnumber N / 16, as at Market size (~9k contributions per row, N = 13k);
    * sorting each row's (partner, min) contributions and summing runs
      (``csr_matrix.sum_duplicates``): cost proportional to the contributions
      only, which wins at large N, where a row reaches a few hundred partners
      out of a million and a dense row would be almost all zeros.
    """
    n = vq.shape[0]
    plan = _PairPlan.build(vq)
    per_row = float(plan.row_work[-1]) / max(n, 1)
    if n <= _DENSE_COST_RATIO * per_row:
        return _dense_reduce(vq, plan, max_distance)
    return _sorted_reduce(vq, plan, max_distance)


def _dense_reduce(
    vq: sp.csr_matrix, plan: _PairPlan, max_distance: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = vq.shape[0]
    counts = np.diff(plan.row_ptr)
    row_of = np.repeat(np.arange(n, dtype=plan.itype), counts)
    # float32 row sums accumulated like the pair minima (min(v, v) = v), so two
    # bitwise-equal rows (duplicate samples) get distance exactly 0
    rowsum = torch.zeros(n, dtype=torch.float32)
    rowsum.index_add_(0, torch.from_numpy(row_of.astype(np.int64)), torch.from_numpy(plan.data))
    rowsum = rowsum.numpy()
    rs_min = float(rowsum.min())
    keep_frac = (1.0 - max_distance) / (2.0 - max_distance) * (1.0 - 1e-4)
    rows_per_block = max(1, _BUFFER_ELEMS // n)
    buf = torch.zeros(rows_per_block * n, dtype=torch.float32)  # reused, re-zeroed
    out_p, out_g, out_d = [], [], []
    for r0, r1, partners, mins in plan.blocks(rows_per_block):
        e0, e1 = int(plan.row_ptr[r0]), int(plan.row_ptr[r1])
        keys = np.repeat((row_of[e0:e1] - r0).astype(np.int64) * n, plan.reps[e0:e1])
        keys += partners
        block = buf[: (r1 - r0) * n]
        block.index_add_(0, torch.from_numpy(keys), torch.from_numpy(mins))
        del keys, mins, partners
        flat = block.numpy()
        if max_distance < 1.0:
            # d <= t  <=>  m >= (1 - t) / (2 - t) * (|V_p| + |V_g|). Every row of V (and
            # so of its query expansion) sums to 1, so one scalar bound from the smallest
            # row sums is nearly tight; it is loosened by 1e-4 and the exact float32 test
            # below decides.
            bound = max(keep_frac * (float(rowsum[r0:r1].min()) + rs_min), 1e-30)
            hit = np.flatnonzero(flat >= bound)
        else:
            hit = np.flatnonzero(flat)
        m = flat[hit]
        block.zero_()
        p = hit // n + r0
        g = hit % n
        den = rowsum[p] + rowsum[g]
        den -= m
        d = np.clip(1.0 - m / den, 0.0, 1.0).astype(np.float32)
        keep = d <= max_distance
        out_p.append(p[keep])
        out_g.append(g[keep])
        out_d.append(d[keep])
    return _concat(out_p, out_g, out_d)


def _sorted_reduce(
    vq: sp.csr_matrix, plan: _PairPlan, max_distance: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = vq.shape[0]
    # float64 sums: each side is then exact to ~1e-16, whatever order the sort leaves
    rowsum = np.add.reduceat(plan.data.astype(np.float64), plan.row_ptr[:-1])
    rowsum[np.diff(plan.row_ptr) == 0] = 0.0
    out_p, out_g, out_d = [], [], []
    for r0, r1, partners, mins in plan.blocks(n):
        indptr = plan.row_work[r0 : r1 + 1] - plan.row_work[r0]
        block = sp.csr_matrix((mins.astype(np.float64), partners, indptr), shape=(r1 - r0, n))
        del partners, mins
        block.sum_duplicates()
        p = np.repeat(np.arange(r0, r1, dtype=np.int64), np.diff(block.indptr))
        g = block.indices.astype(np.int64)
        m = block.data
        d = np.clip(1.0 - m / (rowsum[p] + rowsum[g] - m), 0.0, 1.0)
        keep = d <= max_distance
        out_p.append(p[keep])
        out_g.append(g[keep])
        out_d.append(d[keep].astype(np.float32))
    return _concat(out_p, out_g, out_d)


def _concat(
    p: list[np.ndarray], g: list[np.ndarray], d: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not p:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    return np.concatenate(p), np.concatenate(g), np.concatenate(d)


def _symmetric_csr(n: int, p: np.ndarray, g: np.ndarray, d: np.ndarray) -> sp.csr_matrix:
    """(N, N) CSR from upper pairs plus a zero diagonal, each row sorted by distance.

    Built directly from arrays (no sparse arithmetic) so explicit zeros survive;
    rows sorted by value are what sklearn's precomputed-neighbour code expects.
    """
    diag = np.arange(n, dtype=np.int64)
    rows = np.concatenate([p, g, diag])
    cols = np.concatenate([g, p, diag])
    vals = np.concatenate([d, d, np.zeros(n, dtype=np.float32)])
    order = np.lexsort((cols, vals, rows))
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
    index_dtype = np.int32 if max(n, rows.size) < np.iinfo(np.int32).max else np.int64
    return sp.csr_matrix(
        (vals[order], cols[order].astype(index_dtype), indptr.astype(index_dtype)), shape=(n, n)
    )


def _check_max_distance(max_distance: float | None) -> float:
    if max_distance is None:
        return 1.0
    if (
        isinstance(max_distance, bool)
        or not isinstance(max_distance, numbers.Real)
        or not 0.0 <= max_distance <= 1.0
    ):
        raise ValueError(f"max_distance must be a number in [0, 1] or None, found {max_distance!r}")
    return float(max_distance)


def jaccard_from_neighbours(
    features: np.ndarray | torch.Tensor,
    sims: np.ndarray,
    idx: np.ndarray,
    k1: int = 30,
    k2: int = 6,
    variant: Variant = "paper",
    *,
    max_distance: float | None = None,
) -> sp.csr_matrix:
    """Sparse Jaccard distance from precomputed ranked neighbours (see ``knn_search``).

    Split from :func:`sparse_jaccard_distance` so the kNN search can be timed,
    cached or run elsewhere (e.g. on a GPU). ``sims``/``idx`` are (N, >= depth)
    with the point itself in column 0, depth = ``jaccard_depth(k1, k2, variant)``.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, found {variant!r}")
    x = as_unit_features(features)
    n = x.shape[0]
    k1, k2 = check_k(k1, k2, n)
    limit = _check_max_distance(max_distance)
    depth = jaccard_depth(k1, k2, variant)
    idx = np.asarray(idx)
    sims = np.asarray(sims)
    if idx.ndim != 2 or idx.shape[0] != n or idx.shape[1] < depth or sims.shape != idx.shape:
        raise ValueError(
            f"sims and idx must both be (N={n}, >= {depth}), found {sims.shape} and {idx.shape}"
        )
    if not np.issubdtype(idx.dtype, np.integer) or idx.min() < 0 or idx.max() >= n:
        raise ValueError(f"idx must hold integer row ids in [0, {n})")
    if not np.array_equal(idx[:, 0], np.arange(n)):
        raise ValueError("idx column 0 must be each row's own id (self at rank 0)")
    idx = np.ascontiguousarray(idx[:, :depth], dtype=np.int64)
    sims = np.ascontiguousarray(sims[:, :depth], dtype=np.float32)
    qe = min(k2, k1) if variant == "cluster_contrast" else k2
    pattern = expanded_pattern(idx, k1, variant)
    v = _weights(x, pattern, sims, idx)
    vq = _query_expansion(v, idx, qe)
    del v, pattern
    p, g, d = _pair_distances(vq, limit)
    return _symmetric_csr(n, p, g, d)


def sparse_jaccard_distance(
    features: np.ndarray | torch.Tensor,
    k1: int = 30,
    k2: int = 6,
    variant: Variant = "paper",
    *,
    knn: KnnMethod | None = None,
    max_distance: float | None = None,
    hnsw_m: int = 32,
    ef_search: int = 128,
    ef_construction: int = 80,
    ivf_nlist: int | None = None,
    ivf_nprobe: int = 8,
) -> sp.csr_matrix:
    """(N, N) CSR k-reciprocal Jaccard distance; missing entries mean distance 1.

    Equal to ``jaccard_distance(features, k1, k2, variant)`` on every stored pair
    (up to float rounding, ~1e-7), and that dense matrix is 1 wherever nothing is
    stored (or > ``max_distance`` when one is given) -- given the same neighbour
    rankings: ``knn="torch"`` reproduces the reference's bit for bit, faiss
    (``"exact"``) may swap neighbours whose similarities agree to float32
    rounding (see ``knn.py``).

    Args:
        features: (N, D) L2-normalised features (numpy or torch; CUDA tensors run
            the kNN search on the GPU).
        k1, k2, variant: as for ``jaccard_distance``.
        knn: kNN backend, ``"exact"`` | ``"torch"`` | ``"ivf"`` | ``"hnsw"`` (see
            ``knn.py``); None = ``"torch"`` for CUDA tensors, else ``"exact"``. With
            an approximate backend the distance is the Jaccard distance of the
            approximate neighbour lists.
        max_distance: store only pairs with d <= this (e.g. DBSCAN's eps, which
            keeps memory at the size of the eps-graph); None stores every pair
            that shares support.
        hnsw_m, ef_search, ef_construction: HNSW parameters (``knn="hnsw"`` only).
        ivf_nlist, ivf_nprobe: IVF parameters (``knn="ivf"`` only).
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, found {variant!r}")
    if knn is not None and knn not in KNN_METHODS:
        raise ValueError(f"knn must be one of {KNN_METHODS} or None, found {knn!r}")
    shape = getattr(features, "shape", None)
    if shape is None or len(shape) != 2 or 0 in tuple(shape):
        as_unit_features(features)  # raises the standard type / shape error
    k1, k2 = check_k(k1, k2, int(shape[0]))
    _check_max_distance(max_distance)
    depth = jaccard_depth(k1, k2, variant)
    sims, idx = knn_search(
        features,
        depth,
        method=knn,
        hnsw_m=hnsw_m,
        ef_search=ef_search,
        ef_construction=ef_construction,
        ivf_nlist=ivf_nlist,
        ivf_nprobe=ivf_nprobe,
    )
    return jaccard_from_neighbours(features, sims, idx, k1, k2, variant, max_distance=max_distance)
