"""Approximate kNN for large N: IVF cells in two geometries, scored by exact matrix products.

Why not plain IVF: re-id features carry directions that every image of a camera
shares (viewpoint, light, background), with more variance than the identity
signal along them. k-means cells then split by camera, a query's nearest cells
are those of its own camera, and the neighbours the clustering needs most -- the
same person in another camera -- sit in cells the query never probes. On
camera-structured synthetic features (``benchmarks/structured_features.py``)
plain faiss IVF found ~0.85 of each row's 6 exact neighbours at any nprobe up
to 128 (100k x 256), and the labels' ARI against the exact pipeline's stayed
near 0.63; HNSW behaved alike (docs/scale.md).

So the cells are built twice. Once on the features as they are (spherical
k-means, as plain IVF): they hold each image's same-camera surroundings. Once
in a whitened space -- PCA of a sample, each principal direction scaled by
eigenvalue^``whiten`` (-0.5: full whitening) -- where the few high-variance
shared directions are damped, so cells follow identities rather than cameras
and a person's images in other cameras share its cells. Every row's candidates
are the members of the ``nprobe`` cells nearest to its own cell, in each
geometry; both candidate sets are scored by exact inner products of the
original features and the best ``depth + 8`` kept, so the similarities and the
order of the neighbours found are exact and only which are found is approximate.

Why a hand-written scan: faiss's IVF scans one query at a time (~14 GFLOP/s
on the 2-core CPU of docs/scale.md), while all N rows are queries here. Taking
the queries cell by cell, each cell's rows against its probed cells' rows is
one matrix product (BLAS, several times faster), and the probes of a cell are
those of its centroid, so the probing is slightly coarser than per query;
faiss still trains and assigns the cells.
"""

from __future__ import annotations

import faiss
import numpy as np
import torch

WHITEN = -0.5  # eigenvalue power of the second geometry (benchmarks/knn_choice.py)
NPROBE = 256  # cells probed per cell, in each geometry
CELL_SIZE = 32  # rows per cell: the default ivf_nlist is N // CELL_SIZE
_TRAIN_PER_LIST = 64  # k-means training points per centroid, at most
_TRAIN_MAX = 1 << 17  # k-means training rows, at most (its cost is rows x nlist x D x iters)
_KMEANS_ITERS = 8
_ASSIGN_ROWS = 1 << 16  # rows transformed and assigned at once


def check_whitened_params(whiten: float, nprobe: int) -> None:
    if isinstance(whiten, bool) or not isinstance(whiten, (int, float)) or not -1 <= whiten <= 0:
        raise ValueError(f"ivf_whiten must be a number in [-1, 0], found {whiten!r}")
    if isinstance(nprobe, bool) or not isinstance(nprobe, (int, np.integer)) or nprobe < 1:
        raise ValueError(f"ivf_nprobe must be an integer >= 1, found {nprobe!r}")


def _cells(
    x: np.ndarray, nlist: int, nprobe: int, whiten: float | None, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each row's cell and each cell's ``nprobe`` nearest cells (itself first), by centroid.

    ``whiten`` None: spherical k-means on ``x``; else k-means (inner-product
    assignment) in the PCA space whose directions are scaled by eigenvalue^whiten
    (faiss ``PCAMatrix``). The cells are small (~``CELL_SIZE`` rows: at 100k x 256
    flat k-means cells of 25 rows, 256 probes, gave ARI 0.977 against the exact
    labels where 80-row cells and 128 probes gave 0.955), so k-means trains on at
    most ``_TRAIN_MAX`` rows for ``_KMEANS_ITERS`` rounds; a two-level k-means
    (coarse, then fine within each coarse cell) was cheaper but lost a third of
    the cross-camera neighbours.
    """
    n, dim = x.shape
    train_n = min(n, nlist * _TRAIN_PER_LIST, max(nlist, _TRAIN_MAX))
    train = x[np.sort(np.random.default_rng(seed).choice(n, train_n, replace=False))]
    pca = None
    if whiten is not None:
        pca = faiss.PCAMatrix(dim, dim, float(whiten))
        pca.train(train)
        train = pca.apply(train)
    kmeans = faiss.Clustering(dim, nlist)
    kmeans.niter = _KMEANS_ITERS
    kmeans.seed = seed
    kmeans.max_points_per_centroid = _TRAIN_PER_LIST
    kmeans.min_points_per_centroid = 1
    kmeans.spherical = whiten is None
    quantizer = faiss.IndexFlatIP(dim)
    kmeans.train(np.ascontiguousarray(train), quantizer)
    assign = np.empty(n, dtype=np.int64)
    for r0 in range(0, n, _ASSIGN_ROWS):
        chunk = x[r0 : r0 + _ASSIGN_ROWS]
        assign[r0 : r0 + chunk.shape[0]] = quantizer.search(
            chunk if pca is None else pca.apply(chunk), 1
        )[1][:, 0]
    centroids = faiss.rev_swig_ptr(quantizer.get_xb(), nlist * dim).reshape(nlist, dim)
    probes = quantizer.search(np.ascontiguousarray(centroids), min(nprobe, nlist))[1]
    return assign, probes


def _scan(
    xt: torch.Tensor, queries: np.ndarray, assign: np.ndarray, probes: np.ndarray, cand: int
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``cand`` (self first, +inf) of every query among its cell's probed cells' rows."""
    order = np.argsort(assign, kind="stable")
    bounds = np.searchsorted(assign[order], np.arange(probes.shape[0] + 1))
    is_query = np.zeros(assign.size, dtype=bool)
    is_query[queries] = True
    pos = np.full(assign.size, -1, dtype=np.int64)
    pos[queries] = np.arange(queries.size)
    sims_out = np.empty((queries.size, cand), dtype=np.float32)
    idx_out = np.empty((queries.size, cand), dtype=np.int64)
    for c in np.unique(assign[queries]):
        members = order[bounds[c] : bounds[c + 1]]
        rows = members[is_query[members]]
        cells = probes[c][probes[c] >= 0]
        if c not in cells:  # by inner product a cell need not be its own nearest
            cells = np.concatenate([[c], cells[:-1]])
        pool = np.concatenate([order[bounds[p] : bounds[p + 1]] for p in cells])
        if pool.size < cand:
            raise RuntimeError(
                f"the probed IVF cells hold {pool.size} rows, fewer than the {cand} candidates "
                "needed; raise ivf_nprobe or lower ivf_nlist"
            )
        sims = xt[torch.from_numpy(rows)] @ xt[torch.from_numpy(pool)].T
        is_self = torch.from_numpy(pool[None, :] == rows[:, None])
        sims[is_self] = float("inf")  # its own cell is always probed
        vals, top = torch.topk(sims, cand, dim=1, largest=True, sorted=False)
        sims_out[pos[rows]] = vals.numpy()
        idx_out[pos[rows]] = pool[top.numpy()]
    return sims_out, idx_out


def whitened_ivf_candidates(
    x: np.ndarray,
    queries: np.ndarray,
    cand: int,
    nlist: int,
    nprobe: int = NPROBE,
    whiten: float = WHITEN,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """``cand`` candidates per query (self first, similarity +inf), unsorted past self.

    The union of the plain and the whitened cells' candidates, each scored by
    the exact inner product of ``x``; duplicates found in both are kept once.
    """
    n = x.shape[0]
    if not 1 <= nlist <= n:
        raise ValueError(f"ivf_nlist must be in [1, N={n}], found {nlist}")
    check_whitened_params(whiten, nprobe)
    uq, inv = np.unique(queries, return_inverse=True)
    xt = torch.from_numpy(x)
    parts = [_scan(xt, uq, *_cells(x, nlist, nprobe, w, seed), cand) for w in (None, whiten)]
    sims = np.concatenate([p[0] for p in parts], axis=1)
    idx = np.concatenate([p[1] for p in parts], axis=1)
    by_id = np.argsort(idx, axis=1, kind="stable")
    idx = np.take_along_axis(idx, by_id, axis=1)
    sims = np.take_along_axis(sims, by_id, axis=1)
    sims[:, 1:][idx[:, 1:] == idx[:, :-1]] = -np.inf  # a row found twice counts once
    top = np.argpartition(-sims, cand - 1, axis=1)[:, :cand]
    return np.take_along_axis(sims, top, axis=1)[inv], np.take_along_axis(idx, top, axis=1)[inv]
