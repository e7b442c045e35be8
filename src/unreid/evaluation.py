"""Retrieval metrics under the Market-1501 protocol (as torchreid's ``eval_market1501``).

Per query, gallery images of the same identity seen by the same camera are
removed: matching them is trivial and says nothing about cross-camera re-id.
Market's distractors (gallery identity 0) never match because no query
carries their id, so no identity is special by default: MSMT17's identity 0 is
a real person. ``distractor_pid`` makes one id never match; negative ids
mark junk; junk is removed like same-camera matches (the official Market
protocol), distractors stay in the ranking and never count as a match.
Queries left without any true match are skipped and counted.

AP is the mean, over the positions of the true matches, of precision at that
position; the ranking is a stable sort of the distances, so ties keep gallery
order. CMC counts the first true match.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

_QUERY_CHUNK_ELEMS = 1 << 24  # distance entries ranked at once

Ids = Sequence[int] | np.ndarray | torch.Tensor


@dataclass(frozen=True)
class RankingMetrics:
    """mAP and CMC as fractions in [0, 1]; ``as_dict(percent=True)`` for display."""

    mAP: float
    cmc: np.ndarray
    num_valid_queries: int
    num_skipped_queries: int

    def rank(self, k: int) -> float:
        """CMC at rank k (1-based)."""
        if not 1 <= k <= len(self.cmc):
            raise ValueError(f"rank k must be in [1, {len(self.cmc)}] (max_rank), found {k}")
        return float(self.cmc[k - 1])

    @property
    def rank1(self) -> float:
        return self.rank(1)

    @property
    def rank5(self) -> float:
        return self.rank(5)

    @property
    def rank10(self) -> float:
        return self.rank(10)

    def as_dict(self, percent: bool = False) -> dict[str, float | int]:
        """mAP and the ranks 1/5/10 that ``max_rank`` covers, plus query counts."""
        scale = 100.0 if percent else 1.0
        out: dict[str, float | int] = {"mAP": self.mAP * scale}
        for k in (1, 5, 10):
            if k <= len(self.cmc):
                out[f"rank{k}"] = self.rank(k) * scale
        out["num_valid_queries"] = self.num_valid_queries
        out["num_skipped_queries"] = self.num_skipped_queries
        return out


def _as_matrix(x: np.ndarray | torch.Tensor, name: str) -> torch.Tensor:
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N, D), found shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} must be non-empty, found shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{name} must be real numeric, found dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return torch.from_numpy(arr)


def pairwise_distance(qf: np.ndarray | torch.Tensor, gf: np.ndarray | torch.Tensor) -> np.ndarray:
    """(Q, G) float32 squared Euclidean distances; 2 - 2cos for unit features.

    Negative values from rounding are clipped to 0.
    """
    q = _as_matrix(qf, "qf")
    g = _as_matrix(gf, "gf")
    if q.shape[1] != g.shape[1]:
        raise ValueError(
            f"qf and gf must have the same feature dimension, found {q.shape[1]} and {g.shape[1]}"
        )
    dist = (q * q).sum(1, keepdim=True) + (g * g).sum(1)[None, :]
    dist.addmm_(q, g.T, alpha=-2.0)
    return dist.clamp_(min=0.0).numpy()


def _ids(x: Ids, name: str, length: int, what: str) -> np.ndarray:
    arr = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x)
    if arr.ndim != 1 or arr.shape[0] != length:
        raise ValueError(
            f"{name} must be 1-D with {length} entries ({what}), found shape {arr.shape}"
        )
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integers, found dtype {arr.dtype}")
    return arr.astype(np.int64)


def average_precisions(hit_precisions: np.ndarray, n_hits: np.ndarray) -> np.ndarray:
    """Per-query AP from the precisions at each true match, concatenated query by query.

    Summing exactly these values in this order (one ``reduceat`` segment per query)
    is shared with `unreid.evaluation_streaming`, so both evaluators give bit-identical
    mAP rather than agreeing only up to summation order.
    """
    starts = np.concatenate(([0], np.cumsum(n_hits)[:-1]))
    return np.add.reduceat(hit_precisions, starts) / n_hits


def evaluate_ranking(
    distmat: np.ndarray | torch.Tensor,
    q_pids: Ids,
    g_pids: Ids,
    q_cams: Ids,
    g_cams: Ids,
    max_rank: int = 10,
    *,
    distractor_pid: int | None = None,
) -> RankingMetrics:
    """mAP and CMC@1..max_rank from a (Q, G) distance matrix (smaller = more similar).

    ``distractor_pid`` (default None) never matches any query. Market-1501's
    distractors (0) need no flag since no query has their id; MSMT17's 0 is a person.
    """
    d = distmat.detach().cpu().numpy() if isinstance(distmat, torch.Tensor) else np.asarray(distmat)
    if d.ndim != 2 or d.shape[0] == 0 or d.shape[1] == 0:
        raise ValueError(f"distmat must be a non-empty 2-D (Q, G) matrix, found shape {d.shape}")
    if not np.issubdtype(d.dtype, np.number) or np.iscomplexobj(d):
        raise ValueError(f"distmat must be real numeric, found dtype {d.dtype}")
    if np.isnan(d).any():
        raise ValueError("distmat contains NaN values")
    nq, ng = d.shape
    qp = _ids(q_pids, "q_pids", nq, "one per distmat row")
    gp = _ids(g_pids, "g_pids", ng, "one per distmat column")
    qc = _ids(q_cams, "q_cams", nq, "one per distmat row")
    gc = _ids(g_cams, "g_cams", ng, "one per distmat column")
    if isinstance(max_rank, bool) or not isinstance(max_rank, (int, np.integer)) or max_rank < 1:
        raise ValueError(f"max_rank must be an integer >= 1, found {max_rank!r}")
    max_rank = int(max_rank)

    aps: list[np.ndarray] = []
    first_hits: list[np.ndarray] = []
    chunk = max(1, _QUERY_CHUNK_ELEMS // ng)
    for r0 in range(0, nq, chunk):
        r1 = min(nq, r0 + chunk)
        order = np.argsort(d[r0:r1], axis=1, kind="stable")
        pid, cam = gp[order], gc[order]
        same_pid = pid == qp[r0:r1, None]
        keep = ~(same_pid & (cam == qc[r0:r1, None])) & (pid >= 0)
        hit = same_pid & keep
        if distractor_pid is not None:
            hit &= pid != distractor_pid
        n_hits = hit.sum(axis=1)
        valid = n_hits > 0
        if not valid.any():
            continue
        keep, hit, n_hits = keep[valid], hit[valid], n_hits[valid]
        position = np.cumsum(keep, axis=1)  # 1-based rank among kept items
        precision = np.cumsum(hit, axis=1) / np.maximum(position, 1)
        aps.append(average_precisions(precision[hit], n_hits))
        first_hits.append(position[np.arange(hit.shape[0]), hit.argmax(axis=1)])

    if not aps:
        return summarize(np.empty(0), np.empty(0, dtype=np.int64), nq, max_rank)
    return summarize(np.concatenate(aps), np.concatenate(first_hits), nq, max_rank)


def summarize(ap: np.ndarray, first: np.ndarray, nq: int, max_rank: int) -> RankingMetrics:
    """mAP and CMC from the valid queries' APs and first-hit ranks (1-based)."""
    if ap.size == 0:
        raise ValueError(
            f"no query has a valid gallery match (all {nq} queries skipped): "
            "check q_pids/g_pids and cameras"
        )
    cmc = (first[:, None] <= np.arange(1, max_rank + 1)[None, :]).mean(axis=0)
    return RankingMetrics(
        mAP=float(ap.mean()),
        cmc=cmc.astype(np.float64),
        num_valid_queries=int(ap.size),
        num_skipped_queries=int(nq - ap.size),
    )


def evaluate_features(
    qf: np.ndarray | torch.Tensor,
    gf: np.ndarray | torch.Tensor,
    q_pids: Ids,
    g_pids: Ids,
    q_cams: Ids,
    g_cams: Ids,
    max_rank: int = 10,
    *,
    distractor_pid: int | None = None,
    rerank: bool = False,
) -> RankingMetrics:
    """`evaluate_ranking` on squared Euclidean distances between query and gallery features.

    Runs `unreid.evaluation_streaming.evaluate_streaming`: the same numbers without
    materialising the (Q, G) matrix, which for MSMT17's test split would not fit in
    memory. ``rerank=True`` applies k-reciprocal re-ranking (k1=20, k2=6, lambda=0.3).
    """
    from unreid.evaluation_streaming import evaluate_streaming  # it imports this module

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
