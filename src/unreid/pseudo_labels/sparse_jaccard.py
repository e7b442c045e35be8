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
   block, each block turned into distances and filtered before the next starts
   (``jaccard_pairs.pair_distances``).

Missing entries of the result mean distance 1 (or > ``max_distance``). The
diagonal and any other zero distance (duplicate samples) are stored as explicit
zeros, which scipy keeps as long as the matrix is not re-built by arithmetic;
sklearn's DBSCAN with ``metric="precomputed"`` treats exactly the stored entries
as candidate neighbours, so the labels equal those from the dense matrix for
any eps < 1 (eps <= ``max_distance``).
"""

from __future__ import annotations

import numbers

import numpy as np
import scipy.sparse as sp
import torch

from unreid.neighbours import as_unit_features
from unreid.pseudo_labels.jaccard import VARIANTS, Variant, check_k, half_size
from unreid.pseudo_labels.jaccard_pairs import pair_distances
from unreid.pseudo_labels.knn import KNN_METHODS, KnnMethod, knn_search

_ROW_BLOCK = 1 << 16  # rows per sparse-product block in the expansion step


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


def symmetric_csr(n: int, p: np.ndarray, g: np.ndarray, d: np.ndarray) -> sp.csr_matrix:
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


def check_max_distance(max_distance: float | None) -> float:
    if max_distance is None:
        return 1.0
    if (
        isinstance(max_distance, bool)
        or not isinstance(max_distance, numbers.Real)
        or not 0.0 <= max_distance <= 1.0
    ):
        raise ValueError(f"max_distance must be a number in [0, 1] or None, found {max_distance!r}")
    return float(max_distance)


def expanded_encodings(
    features: np.ndarray | torch.Tensor,
    sims: np.ndarray,
    idx: np.ndarray,
    k1: int = 30,
    k2: int = 6,
    variant: Variant = "paper",
) -> sp.csr_matrix:
    """The query-expanded encodings V (N, N) CSR from ranked neighbours of every row.

    Everything of the Jaccard distance but the pair sums (steps 2-4 above): O(N k^2)
    sparse work, deterministic given the lists, so every torchrun rank that holds
    the gathered lists builds the same V and sums the pairs of its own rows.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, found {variant!r}")
    x = as_unit_features(features)
    n = x.shape[0]
    k1, k2 = check_k(k1, k2, n)
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
    return _query_expansion(v, idx, qe)


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
    limit = check_max_distance(max_distance)
    vq = expanded_encodings(features, sims, idx, k1, k2, variant)
    p, g, d = pair_distances(vq, limit)
    return symmetric_csr(vq.shape[0], p, g, d)


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
    ivf_nprobe: int | None = None,
    knn_refine: int | None = None,
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
        knn_refine: refinement rounds of the approximate backends' lists (None =
            ``knn.REFINE``; see ``knn_search``).
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, found {variant!r}")
    if knn is not None and knn not in KNN_METHODS:
        raise ValueError(f"knn must be one of {KNN_METHODS} or None, found {knn!r}")
    shape = getattr(features, "shape", None)
    if shape is None or len(shape) != 2 or 0 in tuple(shape):
        as_unit_features(features)  # raises the standard type / shape error
    k1, k2 = check_k(k1, k2, int(shape[0]))
    check_max_distance(max_distance)
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
        refine=knn_refine,
    )
    return jaccard_from_neighbours(features, sims, idx, k1, k2, variant, max_distance=max_distance)
