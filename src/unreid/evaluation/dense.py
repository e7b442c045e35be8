"""The brute-force reference evaluator: the full (Q, G) matrix, argsorted.

Simple enough to check by eye against the protocol (see `unreid.evaluation`),
which is why the streaming evaluator is tested for bit-identical results
against it rather than against a copy of itself. Memory is O(Q * G): fine for
Market-1501, too much for MSMT17, where `evaluate_features` streams instead.
"""

from __future__ import annotations

import numpy as np
import torch

from unreid.evaluation.metrics import (
    Ids,
    RankingMetrics,
    average_precisions,
    check_distmat,
    check_ids,
    check_max_rank,
    summarize,
)

_QUERY_CHUNK_ELEMS = 1 << 24  # distance entries ranked at once


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
    d = check_distmat(distmat)
    if np.isnan(d).any():
        raise ValueError("distmat contains NaN values")
    nq, ng = d.shape
    qp = check_ids(q_pids, "q_pids", nq, "one per distmat row")
    gp = check_ids(g_pids, "g_pids", ng, "one per distmat column")
    qc = check_ids(q_cams, "q_cams", nq, "one per distmat row")
    gc = check_ids(g_cams, "g_cams", ng, "one per distmat column")
    max_rank = check_max_rank(max_rank)

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
