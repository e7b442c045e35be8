"""Bounded-memory mAP/CMC: query chunks against the whole gallery, no full argsort.

`unreid.evaluation.dense.evaluate_ranking` needs the full (Q, G) distance matrix and an
argsort of it; for MSMT17's test split (11,659 x 82,161) that is about 4 GB of
float32 distances plus 8 GB of int64 order, before the masks. Here distances are
produced ``chunk_size`` query rows at a time (on the features' device) and each
query is scored from its row alone, with the same protocol and bit-identical
results (the protocol of `unreid.evaluation`: same-identity same-camera and
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

Optional k-reciprocal re-ranking (``rerank=True``) scores the distances of
`unreid.evaluation.rerank.rerank_chunks` instead.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from unreid.evaluation.distances import (
    Features,
    as_features,
    check_chunk,
    distance_chunks,
)
from unreid.evaluation.metrics import (
    Ids,
    RankingMetrics,
    average_precisions,
    check_distmat,
    check_ids,
    check_max_rank,
    summarize,
)
from unreid.evaluation.rerank import rerank_chunks

_CMP_ELEMS = 1 << 22  # (match, candidate) comparisons held at once
_EXACT_INT = 1 << 53  # integer distances beyond this are not exact in float64


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
    d = check_distmat(distmat)
    nq, ng = d.shape
    qp = check_ids(q_pids, "q_pids", nq, "one per distmat row")
    gp = check_ids(g_pids, "g_pids", ng, "one per distmat column")
    qc = check_ids(q_cams, "q_cams", nq, "one per distmat row")
    gc = check_ids(g_cams, "g_cams", ng, "one per distmat column")
    max_rank = check_max_rank(max_rank)
    chunk = check_chunk(chunk_size, ng)
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

    Same protocol and numbers as the dense ``evaluate_ranking(pairwise_distance(qf, gf),
    ...)``, but peak memory is the features plus one (chunk_size, G) block (default:
    about 16M entries). Distances are computed on ``device`` (default: the features'
    device, so CUDA features are multiplied on the GPU); ranking runs on the CPU.
    ``rerank=True`` scores the k-reciprocal re-ranked distances of
    `unreid.evaluation.rerank.rerank_distances` (k1, k2, lambda_value) instead.
    """
    q = as_features(qf, "qf", device)
    g = as_features(gf, "gf", q.device)
    nq, ng = q.shape[0], g.shape[0]
    qp = check_ids(q_pids, "q_pids", nq, "one per qf row")
    gp = check_ids(g_pids, "g_pids", ng, "one per gf row")
    qc = check_ids(q_cams, "q_cams", nq, "one per qf row")
    gc = check_ids(g_cams, "g_cams", ng, "one per gf row")
    max_rank = check_max_rank(max_rank)
    chunk = check_chunk(chunk_size, ng)
    if rerank:
        source = rerank_chunks(q, g, k1=k1, k2=k2, lambda_value=lambda_value, chunk_size=chunk)
    else:
        source = ((r0, dist.cpu().numpy()) for r0, dist in distance_chunks(q, g, chunk))
    return _rank_chunks(source, qp, qc, gp, gc, max_rank, distractor_pid)


def evaluate_features(
    qf: Features,
    gf: Features,
    q_pids: Ids,
    g_pids: Ids,
    q_cams: Ids,
    g_cams: Ids,
    max_rank: int = 10,
    *,
    distractor_pid: int | None = None,
    rerank: bool = False,
) -> RankingMetrics:
    """Retrieval metrics of squared Euclidean distances between query and gallery features.

    The numbers of the dense ``evaluate_ranking(pairwise_distance(qf, gf), ...)``
    without materialising the (Q, G) matrix, which for MSMT17's test split would
    not fit in memory. ``rerank=True`` applies k-reciprocal re-ranking (k1=20,
    k2=6, lambda=0.3).
    """
    return evaluate_streaming(
        qf,
        gf,
        q_pids,
        g_pids,
        q_cams,
        g_cams,
        max_rank,
        distractor_pid=distractor_pid,
        rerank=rerank,
    )
