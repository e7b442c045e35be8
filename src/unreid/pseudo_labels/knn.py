"""k-nearest-neighbour rankings for the k-reciprocal encoding, from several backends.

The sparse Jaccard distance needs, for every sample, itself followed by its
nearest neighbours; everything after that costs O(N * k). The search is the
only O(N^2 * D) step, so its backend decides how far clustering scales:

* ``"exact"``: faiss ``IndexFlatIP`` (brute force, BLAS). Same ordering rules as
  the dense reference (``unreid.neighbours.ranked_neighbours``): self at rank 0, then by
  similarity, ties broken by the lower index. faiss's float32 inner products can
  differ from torch's in the last bit, so two neighbours closer than that may
  swap (6 of 12,936 rows at Market size, d = 2048, changing 1 label).
* ``"torch"``: chunked ``x @ x.T`` + ``torch.topk`` on the features' device; the
  default when the features are a CUDA tensor (no faiss-gpu needed). On CPU it
  runs the very matrix products of the dense reference (same chunk shapes), so
  its rankings match it bit for bit; its speed is within ~5% of ``"exact"``.
* ``"ivf"``: faiss ``IndexIVFFlat``, approximate: k-means cells (``ivf_nlist``,
  default 4 sqrt(N)) and each query scans its ``ivf_nprobe`` nearest cells.
  For N in the hundreds of thousands and beyond, where brute force is
  O(N^2 D): at N = 10^6, d = 256, nprobe 8 it built and searched in 141 s on
  2 cores where HNSW (M 32, ef 128) took 587 s (``benchmarks/pseudo_labels.py``).
* ``"hnsw"``: faiss ``IndexHNSWFlat`` graph search, approximate, the usual
  alternative; slower to build than IVF at these sizes.
* ``"ivf_whitened"``: IVF cells in the features' geometry and in a whitened
  one, each row scored against its cell's probed cells by exact matrix
  products (``whitened_ivf.py``): approximate, and the one that keeps the
  clustering on camera-structured features, where plain IVF and HNSW split
  identities by camera (docs/scale.md).
* ``"auto"`` (the default of the clustering): ``"torch"`` for CUDA features or
  N < ``AUTO_EXACT_BELOW``, else ``"ivf_whitened"`` (``resolve_knn``).
* ``"torch_bf16"``, ``"torch_tf32"``, ``"torch_fp32"``: exact, on the features'
  device (``device_knn.py``): candidates from bf16 / TF32 / fp32 chunked
  products, re-ranked by float64 similarity (ties by lower index) and
  certified against the format's rounding bound, so the lists are exact and
  the same for any chunking or sharding of the queries.

The recall of the approximate backends against exact search is measured by
:func:`knn_recall`.

All backends return the rows already ranked, with exact inner products for the
neighbours they found (HNSW computes true distances for its results; only
*which* neighbours it finds is approximate).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import faiss
import numpy as np
import torch

from unreid.neighbours import UNIT_NORM_TOL, ambiguous_rows, as_unit_features, sort_candidates
from unreid.pseudo_labels.device_knn import device_knn
from unreid.pseudo_labels.nn_refine import check_refine
from unreid.pseudo_labels.nn_refine import refine as refine_lists
from unreid.pseudo_labels.whitened_ivf import CELL_SIZE, NPROBE, WHITEN, whitened_ivf_candidates

KnnMethod = Literal[
    "auto", "exact", "torch", "ivf", "hnsw", "ivf_whitened", "torch_bf16", "torch_tf32",
    "torch_fp32",
]  # fmt: skip
# the device backends, by the precision of their candidate scores
DEVICE_KNN: dict[str, str] = {"torch_bf16": "bf16", "torch_tf32": "tf32", "torch_fp32": "fp32"}
KNN_METHODS: tuple[str, ...] = (
    "auto",
    "exact",
    "torch",
    "ivf",
    "hnsw",
    "ivf_whitened",
    *DEVICE_KNN,
)
# "auto" searches exactly below this many rows: exact torch costs ~N^2 D (349 s at
# 200k x 256 on 2 cores, ~90 s at 100k), the approximate search ~N (docs/scale.md);
# every real re-id training set (MSMT17: 32,621) stays exact.
AUTO_EXACT_BELOW = 100_000
IVF_NPROBE = 8  # plain IVF's cells scanned per query
APPROXIMATE = ("ivf", "hnsw", "ivf_whitened")  # the backends `refine` applies to
REFINE = 1  # default rounds of neighbours-of-neighbours refinement (nn_refine.py)

_EXTRA_CANDIDATES = 8  # beyond the depth, to detect ties at the cut-off
_SIM_CHUNK_ELEMS = 1 << 24  # similarity entries held at once by the torch / fallback paths
_FAISS_QUERY_CHUNK = 1 << 14  # queries per faiss search call (bounds the result buffers)
_IVF_TRAIN_PER_LIST = 64  # k-means training points per IVF cell (faiss warns below 39)
_IVF_KMEANS_ITERS = 10


def default_ivf_nlist(n: int) -> int:
    """IVF cell count: 4 sqrt(N), faiss's usual rule, at most N // 39 (its training floor)."""
    return max(1, min(int(4 * np.sqrt(n)), n // 39))


def _ivf_index(x: np.ndarray, nlist: int | None, nprobe: int, seed: int = 0) -> faiss.Index:
    """IVF-flat index over ``x`` (inner product), k-means trained on a seeded sample."""
    n, dim = x.shape
    nlist = default_ivf_nlist(n) if nlist is None else int(nlist)
    if not 1 <= nlist <= n:
        raise ValueError(f"ivf_nlist must be in [1, N={n}], found {nlist}")
    train_n = min(n, nlist * _IVF_TRAIN_PER_LIST)
    train = x[np.sort(np.random.default_rng(seed).choice(n, size=train_n, replace=False))]
    kmeans = faiss.Clustering(dim, nlist)
    kmeans.niter = _IVF_KMEANS_ITERS
    kmeans.seed = seed
    kmeans.max_points_per_centroid = _IVF_TRAIN_PER_LIST
    kmeans.spherical = True
    quantizer = faiss.IndexFlatIP(dim)
    kmeans.train(train, quantizer)
    index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.is_trained = True
    index.add(x)
    index.nprobe = min(int(nprobe), nlist)
    return index


def resolve_knn(method: str, n: int, is_cuda: bool) -> str:
    """The backend ``method`` stands for: ``"auto"`` by device and N, others themselves."""
    if method != "auto":
        return method
    if is_cuda or n < AUTO_EXACT_BELOW:
        return "torch"
    return "ivf_whitened"


def refine_rounds(refine: int | None, method: str) -> int:
    """The refinement rounds a resolved backend runs: ``refine`` (None = ``REFINE``),
    checked, for the approximate backends; 0 for the exact ones."""
    rounds = REFINE if refine is None else refine
    check_refine(rounds)
    return rounds if method in APPROXIMATE else 0


def _check_depth(depth: int, n: int) -> int:
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 1:
        raise ValueError(f"depth must be an integer >= 1, found {depth!r}")
    if depth > n:
        raise ValueError(f"depth must be at most the number of samples N={n}, found {depth}")
    return int(depth)


def _device_unit_features(features: torch.Tensor) -> torch.Tensor:
    """``as_unit_features`` for a tensor that should stay on its device (no host copy)."""
    if features.ndim != 2 or features.shape[0] == 0 or features.shape[1] == 0:
        raise ValueError(f"features must be non-empty 2-D (N, D), found {tuple(features.shape)}")
    if not features.is_floating_point():
        raise ValueError(f"features must be floating point, found dtype {features.dtype}")
    xt = features.detach().to(torch.float32).contiguous()
    if not torch.isfinite(xt).all():
        raise ValueError("features contains NaN or infinite values")
    err = (xt.double().norm(dim=1) - 1.0).abs()
    worst = int(torch.argmax(err))
    if float(err[worst]) > UNIT_NORM_TOL:
        raise ValueError(
            f"features rows must be L2-normalised (norm 1 within {UNIT_NORM_TOL}), "
            f"found norm {float(xt[worst].double().norm()):.6f} at row {worst}"
        )
    return xt


def _torch_candidates(xt: torch.Tensor, queries: np.ndarray, cand: int) -> tuple[np.ndarray, ...]:
    """Top-``cand`` similarities of ``queries`` against all rows, self forced first.

    Runs on whatever device ``xt`` lives on; results come back as numpy.
    """
    n = xt.shape[0]
    sims_out = np.empty((queries.size, cand), dtype=np.float32)
    idx_out = np.empty((queries.size, cand), dtype=np.int64)
    chunk = max(1, _SIM_CHUNK_ELEMS // n)
    q_all = torch.from_numpy(queries).to(xt.device)
    for r0 in range(0, queries.size, chunk):
        q = q_all[r0 : r0 + chunk]
        sims = xt[q] @ xt.T
        sims[torch.arange(q.shape[0], device=xt.device), q] = float("inf")
        vals, idx = torch.topk(sims, cand, dim=1, largest=True, sorted=True)
        sims_out[r0 : r0 + q.shape[0]] = vals.cpu().numpy()
        idx_out[r0 : r0 + q.shape[0]] = idx.cpu().numpy()
    return sims_out, idx_out


def _faiss_candidates(
    index: faiss.Index, x: np.ndarray, queries: np.ndarray, cand: int
) -> tuple[np.ndarray, np.ndarray]:
    """faiss search of ``queries`` (row ids), with the query itself moved to rank 0.

    faiss does not promise that a point is its own first hit (rounding, or exact
    duplicates), so self is removed wherever it appears and prepended with
    similarity +inf, mirroring the torch path.
    """
    sims_out = np.empty((queries.size, cand), dtype=np.float32)
    idx_out = np.empty((queries.size, cand), dtype=np.int64)
    for r0 in range(0, queries.size, _FAISS_QUERY_CHUNK):
        q = queries[r0 : r0 + _FAISS_QUERY_CHUNK]
        sims, idx = index.search(x[q], cand)
        is_self = idx == q[:, None]
        # keep the first cand - 1 non-self hits of every row, then put self in front
        keep = ~is_self
        keep &= np.cumsum(keep, axis=1) <= cand - 1
        if (keep.sum(axis=1) < cand - 1).any() or (idx[keep] < 0).any():
            raise RuntimeError(
                f"the kNN index returned fewer than {cand} neighbours for some queries; "
                "raise its search breadth (HNSW ef_search, IVF ivf_nprobe)"
            )
        sims_out[r0 : r0 + q.size, 1:] = sims[keep].reshape(q.size, cand - 1)
        idx_out[r0 : r0 + q.size, 1:] = idx[keep].reshape(q.size, cand - 1)
        sims_out[r0 : r0 + q.size, 0] = np.inf
        idx_out[r0 : r0 + q.size, 0] = q
    return sims_out, idx_out


def _rank_rows(
    sims: np.ndarray,
    idx: np.ndarray,
    depth: int,
    full_rows: Callable[[np.ndarray], np.ndarray] | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Sort candidates by (similarity desc, index asc) and cut to ``depth``.

    Where the candidates tied at the cut-off may continue past the candidate
    list, ``full_rows(rows)`` supplies complete similarity rows and those rows are
    ranked by a full stable sort (exact backends only; approximate ones have no
    complete row to consult).
    """
    sims, idx = sort_candidates(sims, idx, descending=True)
    out_s = np.ascontiguousarray(sims[:, :depth])
    out_i = np.ascontiguousarray(idx[:, :depth])
    if full_rows is not None and sims.shape[1] > depth:
        ambiguous = ambiguous_rows(sims, depth)
        for a0 in range(0, ambiguous.size, 256):
            rows = ambiguous[a0 : a0 + 256]
            full = full_rows(rows)  # (r, N), self already +inf
            ranked = np.argsort(-full, axis=1, kind="stable")[:, :depth]
            out_i[rows] = ranked
            out_s[rows] = np.take_along_axis(full, ranked, axis=1)
    out_s[:, 0] = np.nan  # placeholder, replaced below by the true self-similarity
    return out_s, out_i


def knn_search(
    features: np.ndarray | torch.Tensor,
    depth: int,
    *,
    method: KnnMethod | None = None,
    queries: np.ndarray | None = None,
    hnsw_m: int = 32,
    ef_search: int = 128,
    ef_construction: int = 80,
    ivf_nlist: int | None = None,
    ivf_nprobe: int | None = None,
    ivf_whiten: float = WHITEN,
    refine: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Ranked neighbours: ``(sims, idx)``, each (Q, depth), column 0 the query itself.

    Args:
        features: (N, D) L2-normalised features. A CUDA tensor selects ``"torch"``
            by default, so the search runs on the GPU.
        depth: entries per row, self included (k + 1 for k neighbours), <= N.
        method: ``"exact"`` (faiss flat, CPU), ``"torch"`` (any device),
            ``"torch_bf16"`` / ``"torch_tf32"`` / ``"torch_fp32"`` (any device,
            exact from low-precision products, see ``device_knn.py``), ``"ivf"``,
            ``"hnsw"`` or ``"ivf_whitened"`` (approximate), ``"auto"``
            (``resolve_knn``); None picks ``"torch"`` for CUDA tensors and
            ``"exact"`` otherwise.
        queries: row ids to search for (default: all rows).
        hnsw_m, ef_search, ef_construction: HNSW graph degree and search breadths
            (ignored by the exact backends); ef_search is raised to at least
            depth + 8.
        ivf_nlist, ivf_nprobe: IVF cells (None = ``default_ivf_nlist(N)``) and
            cells scanned per query (None = 8 for ``"ivf"``, ``whitened_ivf.NPROBE``
            for ``"ivf_whitened"``).
        ivf_whiten: eigenvalue power of the second cell geometry
            (``"ivf_whitened"`` only).
        refine: rounds of neighbours-of-neighbours refinement of the approximate
            backends' lists (``nn_refine.py``; None = ``REFINE``, 0 = none); they
            need every row's list, so with ``queries`` a strict subset it must be
            0 (torchrun shards refine after gathering, ``sharded.py``). Ignored
            by the exact backends.

    Returns:
        ``sims`` (float32 inner products, column 0 = <x, x>) and ``idx`` (int64).
    """
    is_cuda = isinstance(features, torch.Tensor) and features.is_cuda
    if method is None:
        method = "torch" if is_cuda else "exact"
    if method not in KNN_METHODS:
        raise ValueError(f"method must be one of {KNN_METHODS}, found {method!r}")
    method = resolve_knn(method, int(features.shape[0]), is_cuda)
    rounds = refine_rounds(refine, method)
    on_device = method == "torch" or method in DEVICE_KNN
    if on_device and isinstance(features, torch.Tensor):
        xt = _device_unit_features(features)  # stays on its device
        x = None
    else:
        x = as_unit_features(features)
        xt = torch.from_numpy(x)
    n = xt.shape[0]
    depth = _check_depth(depth, n)
    q = np.arange(n, dtype=np.int64) if queries is None else np.asarray(queries, dtype=np.int64)
    if q.ndim != 1 or (q.size and (q.min() < 0 or q.max() >= n)):
        raise ValueError(f"queries must be a 1-D array of row ids in [0, {n}), found {q!r}")
    if rounds and not np.array_equal(q, np.arange(n)):
        raise ValueError(
            f"refine={rounds} needs every row's list, so queries must be all {n} rows in order "
            "(search a subset with refine=0, then refine the gathered lists: sharded.py)"
        )
    if method in DEVICE_KNN:
        sims, idx, _ = device_knn(xt, q, depth, precision=DEVICE_KNN[method])
        self_sim = (xt[torch.from_numpy(q).to(xt.device)] ** 2).sum(dim=1)
        sims[:, 0] = self_sim.cpu().numpy()
        return sims, idx
    if method == "hnsw":
        for name, val in (("hnsw_m", hnsw_m), ("ef_search", ef_search)):
            if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < 2:
                raise ValueError(f"{name} must be an integer >= 2, found {val!r}")
        index = faiss.IndexHNSWFlat(x.shape[1], int(hnsw_m), faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = max(int(ef_construction), int(hnsw_m))
        index.add(x)
        cand = min(n, depth + _EXTRA_CANDIDATES)
        index.hnsw.efSearch = max(int(ef_search), cand)
        sims, idx = _faiss_candidates(index, x, q, cand)
        full_rows = None
    elif method in ("ivf", "ivf_whitened"):
        whitened = method == "ivf_whitened"
        if ivf_nprobe is None:
            ivf_nprobe = NPROBE if whitened else IVF_NPROBE
        for name, val in (("ivf_nprobe", ivf_nprobe), ("ivf_nlist", ivf_nlist)):
            if val is None and name == "ivf_nlist":
                continue
            if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < 1:
                raise ValueError(f"{name} must be an integer >= 1, found {val!r}")
        cand = min(n, depth + _EXTRA_CANDIDATES)
        if whitened:
            nlist = max(1, n // CELL_SIZE) if ivf_nlist is None else int(ivf_nlist)
            sims, idx = whitened_ivf_candidates(x, q, cand, nlist, int(ivf_nprobe), ivf_whiten)
        else:
            index = _ivf_index(x, ivf_nlist, ivf_nprobe)
            sims, idx = _faiss_candidates(index, x, q, cand)
        full_rows = None
    else:
        cand = min(n, depth + _EXTRA_CANDIDATES)
        if method == "exact":
            index = faiss.IndexFlatIP(x.shape[1])
            index.add(x)
            sims, idx = _faiss_candidates(index, x, q, cand)
        else:
            sims, idx = _torch_candidates(xt, q, cand)

        def full_rows(rows: np.ndarray) -> np.ndarray:
            sel = torch.from_numpy(q[rows]).to(xt.device)
            s = xt[sel] @ xt.T
            s[torch.arange(rows.size, device=xt.device), sel] = float("inf")
            return s.cpu().numpy()

    sims, idx = _rank_rows(sims, idx, depth, full_rows)
    self_sim = (xt[torch.from_numpy(q).to(xt.device)] ** 2).sum(dim=1)
    sims[:, 0] = self_sim.cpu().numpy()
    if rounds:
        sims, idx = refine_lists(x, sims, idx, rounds)
    return sims, idx


def knn_recall(
    features: np.ndarray | torch.Tensor,
    neighbours: np.ndarray,
    k: int,
    *,
    sample: int = 1000,
    seed: int = 0,
) -> float:
    """Recall@k of ``neighbours`` against exact search, on a random sample of queries.

    ``neighbours`` is the (N, >= k + 1) index array of any backend (self in
    column 0, excluded from the count). For each sampled row, the fraction of its
    exact k nearest neighbours that the given list also holds among its first k
    is averaged. Exact backends score 1.0 (same tie rule); an approximate index
    reports how much of the true neighbourhood the Jaccard distance will miss.
    """
    x = as_unit_features(features)
    n = x.shape[0]
    nb = np.asarray(neighbours)
    if nb.ndim != 2 or nb.shape[0] != n:
        raise ValueError(f"neighbours must be (N={n}, k + 1), found shape {nb.shape}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k < n:
        raise ValueError(f"k must be an integer in [1, N), found {k!r}")
    if nb.shape[1] < k + 1:
        raise ValueError(f"neighbours needs at least k + 1 = {k + 1} columns, found {nb.shape[1]}")
    if isinstance(sample, bool) or not isinstance(sample, (int, np.integer)) or sample < 1:
        raise ValueError(f"sample must be an integer >= 1, found {sample!r}")
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(n, size=min(int(sample), n), replace=False))
    _, exact = knn_search(x, k + 1, method="torch", queries=rows)
    got = nb[rows, 1 : k + 1]
    hits = (exact[:, 1:, None] == got[:, None, :]).any(axis=2).sum()
    return float(hits) / float(rows.size * k)
