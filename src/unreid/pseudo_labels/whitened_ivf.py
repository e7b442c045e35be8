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

import functools
import re
from pathlib import Path

import faiss
import numpy as np
import torch
import torch.nn.functional as F

from unreid.pseudo_labels.cell_kmeans import NearestCentroid, kmeans

WHITEN = -0.5  # eigenvalue power of the second geometry (benchmarks/knn_choice.py)
NPROBE = 256  # cells probed per cell, in each geometry
CELL_SIZE = 32  # rows per cell: the default ivf_nlist is N // CELL_SIZE
_TRAIN_PER_LIST = 64  # k-means training points per centroid, at most
_TRAIN_MAX = 1 << 17  # k-means training rows, at most (its cost is rows x nlist x D x iters)
_KMEANS_ITERS = 8
_ASSIGN_ROWS = 1 << 16  # rows transformed and assigned at once
TWO_LEVEL_FROM = 1 << 14  # cells from which k-means and assignment go through coarse cells
GROUP_ROWS = 256  # query rows scored in one product (a group of neighbouring cells)
BF16_EXTRA = 32  # candidates beyond `cand` taken from the bf16 scores, then scored in fp32
TOPK_BLOCK = 16  # score columns per block in `block_topk`
PAD_COLS, PAD_ROWS = 2048, 32  # a scan product's shape, padded to multiples of these


@functools.cache
def bf16_is_fast() -> bool:
    """Whether this CPU multiplies bf16 natively (AMX or AVX-512 BF16), read from Linux's
    /proc/cpuinfo; elsewhere bf16 products may be emulated, slower than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return bool(re.search(r"\b(amx_bf16|avx512_bf16)\b", flags))


def check_whitened_params(whiten: float, nprobe: int) -> None:
    if isinstance(whiten, bool) or not isinstance(whiten, (int, float)) or not -1 <= whiten <= 0:
        raise ValueError(f"ivf_whiten must be a number in [-1, 0], found {whiten!r}")
    if isinstance(nprobe, bool) or not isinstance(nprobe, (int, np.integer)) or nprobe < 1:
        raise ValueError(f"ivf_nprobe must be an integer >= 1, found {nprobe!r}")


def _training_rows(
    x: np.ndarray, nlist: int, whiten: float | None, seed: int
) -> tuple[np.ndarray, faiss.PCAMatrix | None]:
    """k-means' training rows (a seeded sample, at most ``_TRAIN_PER_LIST`` per centroid)
    and, for the whitened geometry, the PCA trained on them (not yet applied)."""
    n, dim = x.shape
    train_n = min(n, nlist * _TRAIN_PER_LIST, max(nlist, _TRAIN_MAX))
    train = x[np.sort(np.random.default_rng(seed).choice(n, train_n, replace=False))]
    if whiten is None:
        return train, None
    pca = faiss.PCAMatrix(dim, dim, float(whiten))
    pca.train(train)
    return train, pca


def _faiss_cells(
    x: np.ndarray, nlist: int, nprobe: int, whiten: float | None, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """faiss k-means and brute-force assignment: N x nlist x D, used below TWO_LEVEL_FROM
    cells. ``whiten`` None: spherical k-means on ``x``; else k-means (inner-product
    assignment) in the PCA space whose directions are scaled by eigenvalue^whiten."""
    n, dim = x.shape
    train, pca = _training_rows(x, nlist, whiten, seed)
    if pca is not None:
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


def _cells(
    x: np.ndarray, nlist: int, nprobe: int, whiten: float | None, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each row's cell and each cell's ``nprobe`` nearest cells (itself first), by centroid.

    The cells are small (~``CELL_SIZE`` rows: at 100k x 256 flat k-means cells of 25
    rows, 256 probes, gave ARI 0.977 against the exact labels where 80-row cells and
    128 probes gave 0.955), so their number grows with N and brute-force k-means and
    assignment (faiss, ``_faiss_cells``) grow as N^2: 200k rows took seconds, a million
    did not finish in 29 minutes. From ``TWO_LEVEL_FROM`` cells on, both go through
    coarse cells (``_coarse_cells``, ``cell_kmeans.py``). At 200k the brute-force cells
    gave ARI 0.972 against the exact labels, the coarse ones 0.952 (recall@6 0.97):
    the whitened geometry is near isotropic, so a row's best centroid is often outside
    the coarse cells it probes.
    """
    if nlist < TWO_LEVEL_FROM:
        return _faiss_cells(x, nlist, nprobe, whiten, seed)
    return _coarse_cells(x, nlist, nprobe, whiten, seed)


def _coarse_cells(
    x: np.ndarray, nlist: int, nprobe: int, whiten: float | None, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Spherical k-means and assignment through coarse cells; whitened rows renormalised."""
    n, dim = x.shape
    train, pca = _training_rows(x, nlist, whiten, seed)

    def space(rows: np.ndarray) -> torch.Tensor:
        if pca is None:
            return torch.from_numpy(rows)
        return F.normalize(torch.from_numpy(pca.apply(np.ascontiguousarray(rows))), dim=1)

    cent = kmeans(space(train), nlist, spherical=True, seed=seed, iters=_KMEANS_ITERS)
    nearest = NearestCentroid(cent, seed)
    assign = np.empty(n, dtype=np.int64)
    for r0 in range(0, n, _ASSIGN_ROWS):
        assign[r0 : r0 + _ASSIGN_ROWS] = nearest(space(x[r0 : r0 + _ASSIGN_ROWS])).numpy()
    quantizer = faiss.IndexFlatIP(dim)
    quantizer.add(np.ascontiguousarray(cent.numpy()))
    probes = quantizer.search(np.ascontiguousarray(cent.numpy()), min(nprobe, nlist))[1]
    return assign, probes


def block_topk(
    s: torch.Tensor, k: int, block: int = TOPK_BLOCK
) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.topk(s, k, dim=1, sorted=False)`` by blocks, the same values (ties aside).

    Columns j, j + nb, j + 2 nb, ... form block j (nb = width / ``block``; a strided
    partition, so the block maxima are an elementwise max of ``block`` contiguous
    slices, which vectorises). Every one of a row's k largest scores lies in one of its
    k blocks of largest maximum -- a block holding one has a maximum at least the k-th
    score, and at most k blocks can -- so the top k of those k x ``block`` columns are
    the row's top k. In the scan at 50k x 256 (groups of ~240 rows against ~28k
    columns, bf16) it took 1.0 s where ``torch.topk`` took 1.3 s. The width must be a
    multiple of ``block``; pad with -inf.
    """
    rows, width = s.shape
    if width % block:
        raise ValueError(f"block_topk needs a width divisible by {block}, found {width}")
    nb = width // block
    if k * block >= width:
        return torch.topk(s, k, dim=1, sorted=False)
    best = torch.topk(s.view(rows, block, nb).amax(dim=1), k, dim=1, sorted=False).indices
    cols = (best[:, :, None] + nb * torch.arange(block)).view(rows, k * block)
    vals, at = torch.topk(torch.gather(s, 1, cols), k, dim=1, sorted=False)
    return vals, torch.gather(cols, 1, at)


def _padded_rows(x: torch.Tensor, index: torch.Tensor, multiple: int) -> torch.Tensor:
    """``x[index]``, then zero rows up to a whole ``multiple`` of rows."""
    out = torch.zeros(-(-index.numel() // multiple) * multiple, x.shape[1], dtype=x.dtype)
    torch.index_select(x, 0, index, out=out[: index.numel()])
    return out


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The concatenation of arange(s, s + l) over (s, l) pairs, without a Python loop."""
    total = int(lengths.sum())
    shift = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    return np.arange(total, dtype=np.int64) + shift


def _groups(probes: np.ndarray, sizes: np.ndarray, group_rows: int) -> list[np.ndarray]:
    """Cells in groups of about ``group_rows`` rows: a cell, then its nearest ungrouped
    cells in its probe order. The groups depend on the cells alone, so a row's candidates
    are the same whichever rows are asked (torchrun shards agree with one process)."""
    taken = np.zeros(len(probes), dtype=bool)
    groups = []
    for c in range(len(probes)):
        if taken[c]:
            continue
        members, rows = [c], int(sizes[c])
        taken[c] = True
        for p in probes[c]:
            if rows >= group_rows:
                break
            if p >= 0 and not taken[p]:
                taken[p] = True
                members.append(int(p))
                rows += int(sizes[p])
        groups.append(np.asarray(members, dtype=np.int64))
    return groups


def _scan(
    xt: torch.Tensor, queries: np.ndarray, assign: np.ndarray, probes: np.ndarray, cand: int
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``cand`` (self first, +inf) of every query among the rows of its probed cells.

    Queries are taken a group of neighbouring cells at a time (``GROUP_ROWS`` rows),
    each group against the union of its cells' probes: one large matrix product per
    group instead of one small one per cell, and each query scored against a superset
    of its own cell's probed rows. On a CPU with bf16 instructions the product is bf16
    (~4x the fp32 rate here) and its best ``cand + BF16_EXTRA`` are scored again in
    fp32, so the similarities returned are exact products either way. The gathers go
    through ``index_select`` and the top-k through ``block_topk``: at 100k x 256 the
    scan took 9.0 s (features' geometry) and 11.4 s (whitened) where advanced indexing
    and ``torch.topk`` took 12.9 s and 16.5 s (side by side, the same candidates).
    """
    nlist = probes.shape[0]
    order = np.argsort(assign, kind="stable")
    bounds = np.searchsorted(assign[order], np.arange(nlist + 1))
    sizes = np.diff(bounds)
    is_query = np.zeros(assign.size, dtype=bool)
    is_query[queries] = True
    pos = np.full(assign.size, -1, dtype=np.int64)
    pos[queries] = np.arange(queries.size)
    asked = np.zeros(nlist, dtype=bool)
    asked[assign[queries]] = True
    where = np.full(assign.size, -1, dtype=np.int64)  # a row's column in the current pool
    fast, extra = (xt.to(torch.bfloat16), BF16_EXTRA) if bf16_is_fast() else (xt, 0)
    sims_out = np.empty((queries.size, cand), dtype=np.float32)
    idx_out = np.empty((queries.size, cand), dtype=np.int64)
    for group in _groups(probes, sizes, GROUP_ROWS):
        if not asked[group].any():
            continue
        members = order[_ranges(bounds[group], sizes[group])]
        rows = members[is_query[members]]
        cells = np.unique(np.concatenate([group, probes[group].ravel()]))
        cells = cells[cells >= 0]
        pool = order[_ranges(bounds[cells], sizes[cells])]
        if pool.size < cand:
            raise RuntimeError(
                f"the probed IVF cells hold {pool.size} rows, fewer than the {cand} candidates "
                "needed; raise ivf_nprobe or lower ivf_nlist"
            )
        where[pool] = np.arange(pool.size)
        r, p = torch.from_numpy(rows), torch.from_numpy(pool)
        # products of few shapes: oneDNN keeps a primitive for every shape it meets (a
        # shape per group held 1.2 GB after a scan of 100k rows, 0.6 GB padded), so the
        # queries are zero-padded to whole PAD_ROWS and the pool to whole PAD_COLS (also
        # whole top-k blocks); the padded columns score -inf, the padded rows are dropped
        sims = (_padded_rows(fast, r, PAD_ROWS) @ _padded_rows(fast, p, PAD_COLS).T)[: rows.size]
        sims[:, pool.size :] = float("-inf")
        sims[torch.arange(rows.size), torch.from_numpy(where[rows])] = float("inf")
        where[pool] = -1
        vals, top = block_topk(sims, min(pool.size, cand + extra))
        if extra:  # bf16 picked the candidates: score them exactly, keep the best
            chosen = p[top]
            found = xt.index_select(0, chosen.ravel()).view(*chosen.shape, -1)
            vals = torch.bmm(found, xt.index_select(0, r).unsqueeze(2)).squeeze(2)
            vals[chosen == r[:, None]] = float("inf")
            vals, keep = torch.topk(vals, cand, dim=1, sorted=False)
            top = torch.gather(top, 1, keep)
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
