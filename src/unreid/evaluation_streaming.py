"""Bounded-memory mAP/CMC: query chunks against the whole gallery, no full argsort.

`unreid.evaluation.evaluate_ranking` needs the full (Q, G) distance matrix and an
argsort of it; for MSMT17's test split (11,659 x 82,161) that is about 4 GB of
float32 distances plus 8 GB of int64 order, before the masks. Here distances are
produced ``chunk_size`` query rows at a time (on the features' device) and each
query is scored from its row alone, with the same protocol and bit-identical
results (see `evaluate_ranking` for the protocol: same-identity same-camera and
junk gallery items removed, an optional distractor id that never matches,
queries without a match skipped and counted).

Why no sort is needed: AP only needs the position of each true match among the
kept gallery items, and the position of a match with distance b at gallery index
i is 1 + #{kept items with distance < b} + #{kept items with distance == b and a
lower index} -- exactly the order of a stable argsort. Per query the matches are
few (tens), so the row is first cut to the items no farther than the worst match
and each match's count is one vectorised comparison; equal distances (rare for
real features) fall back to counting the exact ties before the match's index.
Junk columns are set to NaN, which no comparison counts; same-camera matches are
few and are subtracted explicitly.

Optional k-reciprocal re-ranking (``rerank=True``) follows `rerank_distances`.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import scipy.sparse as sp
import torch

from unreid.evaluation import Ids, RankingMetrics, _ids, average_precisions, summarize
from unreid.pseudo_labels.jaccard import expanded_pairs, query_expansion, reciprocal_sets

_CHUNK_ELEMS = 1 << 24  # default distance entries per chunk (64 MB of float32)
_CMP_ELEMS = 1 << 22  # (match, candidate) comparisons held at once
_PAIR_CHUNK = 1 << 22  # Jaccard (query, gallery) contributions summed at once
_EXACT_INT = 1 << 53  # integer distances beyond this are not exact in float64
_ROW_BLOCK = 4096  # feature rows per block in elementwise passes over the features

Features = np.ndarray | torch.Tensor


def default_chunk_size(num_gallery: int) -> int:
    """Query rows per chunk so that one chunk of distances holds about 16M entries."""
    return max(1, _CHUNK_ELEMS // max(1, num_gallery))


def _features(x: Features, name: str, device: torch.device | str | None) -> torch.Tensor:
    """(N, D) float32 tensor on ``device`` (default: where ``x`` already is)."""
    if isinstance(x, torch.Tensor):
        t = x.detach()
        if t.is_complex() or t.dtype == torch.bool:
            raise ValueError(f"{name} must be real numeric, found dtype {t.dtype}")
    else:
        arr = np.asarray(x)
        if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
            raise ValueError(f"{name} must be real numeric, found dtype {arr.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if t.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N, D), found shape {tuple(t.shape)}")
    if t.shape[0] == 0 or t.shape[1] == 0:
        raise ValueError(f"{name} must be non-empty, found shape {tuple(t.shape)}")
    t = t.to(device=device if device is not None else t.device, dtype=torch.float32).contiguous()
    for r0 in range(0, t.shape[0], _ROW_BLOCK):  # blockwise: no (N, D) temporary
        if not bool(torch.isfinite(t[r0 : r0 + _ROW_BLOCK]).all()):
            raise ValueError(f"{name} contains NaN or infinite values")
    return t


def _squared_norms(x: torch.Tensor) -> torch.Tensor:
    """Row sums of x * x, computed a block of rows at a time to avoid an (N, D) temporary."""
    return torch.cat([(b * b).sum(1) for b in torch.split(x, _ROW_BLOCK)])


def _check_chunk(chunk_size: int | None, num_gallery: int) -> int:
    if chunk_size is None:
        return default_chunk_size(num_gallery)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)):
        raise ValueError(f"chunk_size must be a positive integer or None, found {chunk_size!r}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, found {chunk_size}")
    return int(chunk_size)


def _check_max_rank(max_rank: int) -> int:
    if isinstance(max_rank, bool) or not isinstance(max_rank, (int, np.integer)) or max_rank < 1:
        raise ValueError(f"max_rank must be an integer >= 1, found {max_rank!r}")
    return int(max_rank)


def distance_chunks(
    q: torch.Tensor, g: torch.Tensor, chunk_size: int
) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield (first row, (c, G) squared Euclidean distances) for c <= chunk_size query rows.

    Computed as `unreid.evaluation.pairwise_distance` does (norms plus -2<q, g>,
    clipped at 0) so equal inputs give equal distances; the gallery is never copied.
    """
    if q.shape[1] != g.shape[1]:
        raise ValueError(
            f"qf and gf must have the same feature dimension, found {q.shape[1]} and {g.shape[1]}"
        )
    g_sq = _squared_norms(g)[None, :]
    for r0 in range(0, q.shape[0], chunk_size):
        qc = q[r0 : r0 + chunk_size]
        dist = (qc * qc).sum(1, keepdim=True) + g_sq
        dist.addmm_(qc, g.T, alpha=-2.0)
        yield r0, dist.clamp_(min=0.0)


class _Matches:
    """Per-query true matches and removed same-camera matches, from pid-sorted gallery runs."""

    def __init__(self, g_pids: np.ndarray, g_cams: np.ndarray, distractor_pid: int | None):
        valid = np.flatnonzero(g_pids >= 0)  # junk never matches and is never ranked
        order = valid[np.argsort(g_pids[valid], kind="stable")]  # by pid, then gallery index
        pids, starts, counts = np.unique(g_pids[order], return_index=True, return_counts=True)
        self.order, self.pids, self.starts, self.ends = order, pids, starts, starts + counts
        self.g_cams = g_cams
        self.distractor_pid = distractor_pid
        self.junk = np.flatnonzero(g_pids < 0)

    def of(self, pid: int, cam: int) -> tuple[np.ndarray, np.ndarray]:
        """(true matches, removed same-camera items), both gallery indices in ascending order."""
        k = int(np.searchsorted(self.pids, pid))
        if k == self.pids.size or self.pids[k] != pid:
            return _EMPTY, _EMPTY
        run = self.order[self.starts[k] : self.ends[k]]
        same_cam = self.g_cams[run] == cam
        if self.distractor_pid is not None and pid == self.distractor_pid:
            return _EMPTY, run[same_cam]
        return run[~same_cam], run[same_cam]


_EMPTY = np.zeros(0, dtype=np.int64)


def _count_below(values: np.ndarray, thresholds: np.ndarray, strict: bool) -> np.ndarray:
    """For each threshold t: #{v < t} (strict) or #{v == t}; NaN never counts."""
    out = np.empty(thresholds.size, dtype=np.int64)
    step = max(1, _CMP_ELEMS // max(1, values.size))
    for s in range(0, thresholds.size, step):
        t = thresholds[s : s + step, None]
        cmp = values[None, :] < t if strict else values[None, :] == t
        out[s : s + step] = np.count_nonzero(cmp, axis=1)
    return out


def match_positions(row: np.ndarray, hits: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """1-based positions of the true matches among the kept items, in ranking order.

    ``row`` holds one query's distances with junk columns set to NaN; ``hits`` and
    ``removed`` are ascending gallery indices. Positions equal those of a stable
    argsort of the kept items (ties keep gallery order) without sorting the row.
    """
    hv = row[hits]
    order = np.argsort(hv, kind="stable")  # hits ascend, so this is (distance, index) order
    hv, hi = hv[order], hits[order]
    cand = row[row <= hv[-1]]  # only these can precede any match
    before = _count_below(cand, hv, strict=True)
    ties = _count_below(cand, hv, strict=False)
    for k in np.flatnonzero(ties > 1):  # equal distances: count those with a lower index
        before[k] += np.count_nonzero(row[: hi[k]] == hv[k])
    if removed.size:
        rv, ri = row[removed], removed
        gone = (rv[None, :] < hv[:, None]) | ((rv[None, :] == hv[:, None]) & (ri < hi[:, None]))
        before -= np.count_nonzero(gone, axis=1)
    return before + 1


def _rank_chunks(
    chunks: Iterator[tuple[int, np.ndarray]],
    q_pids: np.ndarray,
    q_cams: np.ndarray,
    g_pids: np.ndarray,
    g_cams: np.ndarray,
    max_rank: int,
    distractor_pid: int | None,
) -> RankingMetrics:
    """Metrics from (first row, float (c, G) distances) chunks; each chunk may be overwritten."""
    matches = _Matches(g_pids, g_cams, distractor_pid)
    precisions: list[np.ndarray] = []
    n_hits: list[int] = []
    first: list[int] = []
    for r0, dist in chunks:
        if matches.junk.size:
            dist[:, matches.junk] = np.nan  # never counted by any comparison
        for i in range(dist.shape[0]):
            hits, removed = matches.of(int(q_pids[r0 + i]), int(q_cams[r0 + i]))
            if not hits.size:
                continue
            pos = match_positions(dist[i], hits, removed)
            precisions.append(np.arange(1, pos.size + 1) / pos)
            n_hits.append(pos.size)
            first.append(int(pos[0]))
    nq = q_pids.shape[0]
    if not n_hits:
        return summarize(np.empty(0), np.empty(0, dtype=np.int64), nq, max_rank)
    ap = average_precisions(np.concatenate(precisions), np.asarray(n_hits, dtype=np.int64))
    return summarize(ap, np.asarray(first), nq, max_rank)


def evaluate_distances_streaming(
    distmat: np.ndarray | torch.Tensor,
    q_pids: Ids,
    g_pids: Ids,
    q_cams: Ids,
    g_cams: Ids,
    max_rank: int = 10,
    *,
    chunk_size: int | None = None,
    distractor_pid: int | None = None,
) -> RankingMetrics:
    """`evaluate_ranking` on a given (Q, G) matrix, scored chunk by chunk without argsort.

    Useful when the distances come from elsewhere (e.g. a memory-mapped file); only
    ``chunk_size`` rows are copied at a time. Results are identical to `evaluate_ranking`.
    """
    d = distmat.detach().cpu().numpy() if isinstance(distmat, torch.Tensor) else np.asarray(distmat)
    if d.ndim != 2 or d.shape[0] == 0 or d.shape[1] == 0:
        raise ValueError(f"distmat must be a non-empty 2-D (Q, G) matrix, found shape {d.shape}")
    if not np.issubdtype(d.dtype, np.number) or np.iscomplexobj(d):
        raise ValueError(f"distmat must be real numeric, found dtype {d.dtype}")
    nq, ng = d.shape
    qp = _ids(q_pids, "q_pids", nq, "one per distmat row")
    gp = _ids(g_pids, "g_pids", ng, "one per distmat column")
    qc = _ids(q_cams, "q_cams", nq, "one per distmat row")
    gc = _ids(g_cams, "g_cams", ng, "one per distmat column")
    max_rank = _check_max_rank(max_rank)
    chunk = _check_chunk(chunk_size, ng)
    dtype = d.dtype if d.dtype in (np.float32, np.float64) else np.float64

    def chunks() -> Iterator[tuple[int, np.ndarray]]:
        for r0 in range(0, nq, chunk):
            block = np.array(d[r0 : r0 + chunk], dtype=dtype)  # a copy: junk becomes NaN
            if np.isnan(block).any():
                raise ValueError("distmat contains NaN values")
            if np.issubdtype(d.dtype, np.integer) and np.abs(d[r0 : r0 + chunk]).max() > _EXACT_INT:
                raise ValueError("integer distmat values beyond 2**53 cannot be ranked exactly")
            yield r0, block

    return _rank_chunks(chunks(), qp, qc, gp, gc, max_rank, distractor_pid)


def evaluate_streaming(
    qf: Features,
    gf: Features,
    q_pids: Ids,
    g_pids: Ids,
    q_cams: Ids,
    g_cams: Ids,
    max_rank: int = 10,
    *,
    chunk_size: int | None = None,
    distractor_pid: int | None = None,
    device: torch.device | str | None = None,
    rerank: bool = False,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
) -> RankingMetrics:
    """mAP and CMC@1..max_rank of squared Euclidean retrieval, ``chunk_size`` queries at a time.

    Same protocol and numbers as ``evaluate_ranking(pairwise_distance(qf, gf), ...)``,
    but peak memory is the features plus one (chunk_size, G) block (default: about
    16M entries). Distances are computed on ``device`` (default: the features'
    device, so CUDA features are multiplied on the GPU); ranking runs on the CPU.
    ``rerank=True`` scores the k-reciprocal re-ranked distances of `rerank_distances`
    (k1, k2, lambda_value) instead.
    """
    q = _features(qf, "qf", device)
    g = _features(gf, "gf", q.device)
    nq, ng = q.shape[0], g.shape[0]
    qp = _ids(q_pids, "q_pids", nq, "one per qf row")
    gp = _ids(g_pids, "g_pids", ng, "one per gf row")
    qc = _ids(q_cams, "q_cams", nq, "one per qf row")
    gc = _ids(g_cams, "g_cams", ng, "one per gf row")
    max_rank = _check_max_rank(max_rank)
    chunk = _check_chunk(chunk_size, ng)
    if rerank:
        source = rerank_chunks(q, g, k1=k1, k2=k2, lambda_value=lambda_value, chunk_size=chunk)
    else:
        source = ((r0, dist.cpu().numpy()) for r0, dist in distance_chunks(q, g, chunk))
    return _rank_chunks(source, qp, qc, gp, gc, max_rank, distractor_pid)


# --------------------------------------------------------------------------- re-ranking


def _union_rows(
    q: torch.Tensor, g: torch.Tensor, chunk_size: int
) -> Iterator[tuple[int, torch.Tensor]]:
    """Squared Euclidean distances of the union [q; g] to itself, a block of rows at a time."""
    nq, n = q.shape[0], q.shape[0] + g.shape[0]
    sq = torch.cat((_squared_norms(q), _squared_norms(g)))
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
    cand = min(n, depth + 8)
    ranks = np.empty((n, depth), dtype=np.int64)
    row_max = np.empty(n, dtype=np.float32)
    for r0, dist in _union_rows(q, g, chunk_size):
        rows = torch.arange(dist.shape[0], device=dist.device)
        row_max[r0 : r0 + dist.shape[0]] = dist.max(1).values.cpu().numpy()
        dist[rows, rows + r0] = -1.0  # self first, whatever rounding says
        vals, idx = torch.topk(dist, cand, dim=1, largest=False, sorted=True)
        vals, idx = vals.cpu().numpy(), idx.cpu().numpy()
        order = np.lexsort((idx, vals), axis=-1)
        vals = np.take_along_axis(vals, order, axis=1)
        idx = np.take_along_axis(idx, order, axis=1)
        ranks[r0 : r0 + dist.shape[0]] = idx[:, :depth]
        if cand < n:
            ambiguous = np.nonzero(vals[:, depth - 1] == vals[:, cand - 1])[0]
            for a in ambiguous:
                full = dist[int(a)].cpu().numpy()
                ranks[r0 + a] = np.argsort(full, kind="stable")[:depth]
    return ranks, row_max


def _pair_distances(x_sq: torch.Tensor, x: torch.Tensor, rows: np.ndarray, cols: np.ndarray):
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
    q = _features(qf, "qf", device)
    g = _features(gf, "gf", q.device)
    if q.shape[1] != g.shape[1]:
        raise ValueError(
            f"qf and gf must have the same feature dimension, found {q.shape[1]} and {g.shape[1]}"
        )
    nq, ng = q.shape[0], g.shape[0]
    n = nq + ng
    _check_rerank_args(k1, k2, lambda_value, n)
    k1, k2 = int(k1), int(k2)
    chunk = _check_chunk(chunk_size, n)
    half = int(np.around(k1 / 2.0))  # numpy round half to even, as the reference
    ranks, row_max = _neighbours(q, g, max(k1 + 1, half + 1, k2), chunk)
    # R*(i) of every union item: the reference's 2/3 test is strict
    rows, cols = expanded_pairs(
        reciprocal_sets(ranks, k1 + 1), reciprocal_sets(ranks, half + 1), strict=True
    )
    x = torch.cat((q, g))
    x_sq = _squared_norms(x)
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

    Dense output for convenience; `evaluate_streaming(..., rerank=True)` consumes
    the same values chunk by chunk instead.
    """
    q = _features(qf, "qf", device)
    g = _features(gf, "gf", q.device)
    out = np.empty((q.shape[0], g.shape[0]), dtype=np.float32)
    for r0, block in rerank_chunks(
        q, g, k1=k1, k2=k2, lambda_value=lambda_value, chunk_size=chunk_size
    ):
        out[r0 : r0 + block.shape[0]] = block
    return out
