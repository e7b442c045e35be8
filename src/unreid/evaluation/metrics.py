"""What every evaluator reports, and the input checks they share.

The dense reference (`unreid.evaluation.dense`) and the chunked evaluator
(`unreid.evaluation.streaming`) must agree bit for bit, not just closely, so
the last steps -- per-query AP summation and the mAP / CMC summary -- are one
implementation here rather than two that agree up to rounding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

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


def check_ids(x: Ids, name: str, length: int, what: str) -> np.ndarray:
    """``x`` as a 1-D int64 array of ``length`` ids; ``what`` says what they index (errors)."""
    arr = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x)
    if arr.ndim != 1 or arr.shape[0] != length:
        raise ValueError(
            f"{name} must be 1-D with {length} entries ({what}), found shape {arr.shape}"
        )
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integers, found dtype {arr.dtype}")
    return arr.astype(np.int64)


def check_max_rank(max_rank: int) -> int:
    """``max_rank`` as an int >= 1 (bools are rejected: True is not a rank)."""
    if isinstance(max_rank, bool) or not isinstance(max_rank, (int, np.integer)) or max_rank < 1:
        raise ValueError(f"max_rank must be an integer >= 1, found {max_rank!r}")
    return int(max_rank)


def check_distmat(distmat: np.ndarray | torch.Tensor) -> np.ndarray:
    """A non-empty real (Q, G) distance matrix as numpy, not copied where avoidable.

    NaN is left to the caller, which may only look at a chunk at a time.
    """
    d = distmat.detach().cpu().numpy() if isinstance(distmat, torch.Tensor) else np.asarray(distmat)
    if d.ndim != 2 or d.shape[0] == 0 or d.shape[1] == 0:
        raise ValueError(f"distmat must be a non-empty 2-D (Q, G) matrix, found shape {d.shape}")
    if not np.issubdtype(d.dtype, np.number) or np.iscomplexobj(d):
        raise ValueError(f"distmat must be real numeric, found dtype {d.dtype}")
    return d


def average_precisions(hit_precisions: np.ndarray, n_hits: np.ndarray) -> np.ndarray:
    """Per-query AP from the precisions at each true match, concatenated query by query.

    Summing exactly these values in this order (one ``reduceat`` segment per query)
    is shared by both evaluators, so they give bit-identical mAP rather than
    agreeing only up to summation order.
    """
    starts = np.concatenate(([0], np.cumsum(n_hits)[:-1]))
    return np.add.reduceat(hit_precisions, starts) / n_hits


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
