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

Modules, each importing only those before it: `metrics` (the result and the
shared checks), `dense` (the argsort reference), `distances` (chunked
query-gallery distances), `rerank` (k-reciprocal re-ranking), `streaming`
(the bounded-memory evaluator behind `evaluate_features`).
"""

from __future__ import annotations

from unreid.evaluation.dense import evaluate_ranking, pairwise_distance
from unreid.evaluation.distances import default_chunk_size, distance_chunks
from unreid.evaluation.metrics import Ids, RankingMetrics, average_precisions, summarize
from unreid.evaluation.rerank import rerank_chunks, rerank_distances
from unreid.evaluation.streaming import (
    evaluate_distances_streaming,
    evaluate_features,
    evaluate_streaming,
)

__all__ = [
    "Ids",
    "RankingMetrics",
    "average_precisions",
    "default_chunk_size",
    "distance_chunks",
    "evaluate_distances_streaming",
    "evaluate_features",
    "evaluate_ranking",
    "evaluate_streaming",
    "pairwise_distance",
    "rerank_chunks",
    "rerank_distances",
    "summarize",
]
