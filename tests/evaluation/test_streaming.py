"""Streaming evaluation against the dense argsort evaluator, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import unreid.evaluation.dense as dense
import unreid.evaluation.streaming as streaming
from unreid.evaluation import evaluate_features
from unreid.evaluation.dense import evaluate_ranking, pairwise_distance
from unreid.evaluation.streaming import (
    evaluate_distances_streaming,
    evaluate_streaming,
    match_positions,
)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("chunk", [1, 7, None])
@pytest.mark.parametrize("distractor", [None, 0])
def test_distmat_path_identical_to_evaluate_ranking(ties, chunk, distractor, labels, assert_same):
    for seed in range(4):
        rng = np.random.default_rng(seed)
        nq, ng = 23, 70
        dist = rng.integers(0, 4, size=(nq, ng)).astype(float) if ties else rng.random((nq, ng))
        qp, gp, qc, gc = labels(rng, nq, ng)
        want = evaluate_ranking(dist, qp, gp, qc, gc, max_rank=12, distractor_pid=distractor)
        got = evaluate_distances_streaming(
            dist, qp, gp, qc, gc, max_rank=12, chunk_size=chunk, distractor_pid=distractor
        )
        assert_same(got, want)
    assert want.num_skipped_queries > 0  # the cases do exercise skipping


def test_integer_and_float32_distmats(labels, assert_same):
    rng = np.random.default_rng(5)
    dist = rng.integers(-3, 3, size=(9, 30))  # negative distances rank first, as in argsort
    qp, gp, qc, gc = labels(rng, 9, 30, ids=4)
    assert_same(
        evaluate_distances_streaming(dist, qp, gp, qc, gc, chunk_size=4),
        evaluate_ranking(dist, qp, gp, qc, gc),
    )
    d32 = torch.from_numpy(rng.random((9, 30), dtype=np.float32))
    d32[0, :5] = -0.0  # -0.0 ties with 0.0
    d32[0, 5:10] = 0.0
    assert_same(
        evaluate_distances_streaming(d32, qp, gp, qc, gc, chunk_size=2),
        evaluate_ranking(d32, qp, gp, qc, gc),
    )


@pytest.mark.parametrize("chunk", [1, 7, None])
def test_feature_path_identical_with_tied_distances(chunk, labels, assert_same):
    # small-integer features: every dot product is exact, so many distances tie exactly
    rng = np.random.default_rng(11)
    qf = rng.integers(-1, 2, size=(31, 4)).astype(np.float32)
    gf = rng.integers(-1, 2, size=(90, 4)).astype(np.float32)
    qp, gp, qc, gc = labels(rng, 31, 90, ids=6)
    for distractor in (None, 0):
        want = evaluate_ranking(
            pairwise_distance(qf, gf), qp, gp, qc, gc, distractor_pid=distractor
        )
        got = evaluate_streaming(
            torch.from_numpy(qf), gf, qp, gp, qc, gc, chunk_size=chunk, distractor_pid=distractor
        )
        assert_same(got, want)


def test_evaluate_features_routes_to_streaming(monkeypatch, labels, assert_same):
    rng = np.random.default_rng(2)
    qf, gf = rng.normal(size=(20, 16)), rng.normal(size=(60, 16))
    qp, gp, qc, gc = labels(rng, 20, 60)
    want = evaluate_ranking(pairwise_distance(qf, gf), qp, gp, qc, gc)

    def no_dense(*_args, **_kwargs):
        raise AssertionError("the dense (Q, G) matrix must not be built")

    monkeypatch.setattr(dense, "pairwise_distance", no_dense)
    monkeypatch.setattr(dense, "evaluate_ranking", no_dense)
    assert_same(evaluate_features(qf, gf, qp, gp, qc, gc), want)


def test_evaluate_features_equals_ranking_on_distances():
    rng = np.random.default_rng(1)
    qf, gf = rng.normal(size=(20, 8)), rng.normal(size=(50, 8))
    qp, gp = rng.integers(1, 6, 20), rng.integers(0, 6, 50)
    qc, gc = rng.integers(0, 2, 20), rng.integers(0, 2, 50)
    a = evaluate_features(torch.from_numpy(qf), gf, qp, gp, qc, gc)
    b = evaluate_ranking(pairwise_distance(qf, gf), qp, gp, qc, gc)
    assert a.mAP == b.mAP and np.array_equal(a.cmc, b.cmc)


def test_chunks_are_bounded(monkeypatch, labels):
    """Every distance block is at most chunk_size x G; nothing else is (Q, G)-sized."""
    rng = np.random.default_rng(3)
    qf = rng.integers(-2, 3, size=(50, 5)).astype(np.float32)
    gf = rng.integers(-2, 3, size=(40, 5)).astype(np.float32)
    qp, gp, qc, gc = labels(rng, 50, 40, ids=5)
    shapes, rows_seen = [], []
    real_chunks, real_positions = streaming.distance_chunks, streaming.match_positions

    def spy_chunks(q, g, chunk_size):
        for r0, block in real_chunks(q, g, chunk_size):
            shapes.append(tuple(block.shape))
            yield r0, block

    def spy_positions(row, hits, removed):
        rows_seen.append(row.shape)
        return real_positions(row, hits, removed)

    monkeypatch.setattr(streaming, "distance_chunks", spy_chunks)
    monkeypatch.setattr(streaming, "match_positions", spy_positions)
    got = evaluate_streaming(qf, gf, qp, gp, qc, gc, chunk_size=7)
    assert shapes == [(7, 40)] * 7 + [(1, 40)]
    assert set(rows_seen) == {(40,)} and len(rows_seen) == got.num_valid_queries


def test_match_positions_hand_made():
    nan = np.nan
    # gallery: 0.5, junk, 0.2 (match), 0.2 (other), 0.2 (same-cam match, removed), 0.9 (match)
    row = np.array([0.5, nan, 0.2, 0.2, 0.2, 0.9])
    pos = match_positions(row, np.array([2, 5]), np.array([4]))
    # stable order of kept items: 2 (0.2), 3 (0.2), 0 (0.5), 5 (0.9)
    np.testing.assert_array_equal(pos, [1, 4])
    # a match tied with earlier kept items keeps gallery order
    pos = match_positions(np.array([1.0, 1.0, 1.0]), np.array([1, 2]), np.array([], dtype=int))
    np.testing.assert_array_equal(pos, [2, 3])


def test_bad_input():
    qf, gf = np.zeros((2, 3)), np.ones((4, 3))
    ids = ([1, 2], [1, 2, 1, 2], [0, 0], [1, 1, 1, 1])
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        evaluate_streaming(qf, gf, *ids, chunk_size=0)
    with pytest.raises(ValueError, match="chunk_size must be a positive integer"):
        evaluate_streaming(qf, gf, *ids, chunk_size=2.5)
    with pytest.raises(ValueError, match="same feature dimension"):
        evaluate_streaming(qf, np.ones((4, 5)), *ids)
    with pytest.raises(ValueError, match="qf contains NaN"):
        evaluate_streaming(np.full((2, 3), np.nan), gf, *ids)
    with pytest.raises(ValueError, match="gf must be 2-D"):
        evaluate_streaming(qf, np.ones(3), *ids)
    with pytest.raises(ValueError, match="g_pids must be 1-D with 4"):
        evaluate_streaming(qf, gf, [1, 2], [1, 2], [0, 0], [1, 1, 1, 1])
    with pytest.raises(ValueError, match="max_rank"):
        evaluate_streaming(qf, gf, *ids, max_rank=0)
    with pytest.raises(ValueError, match="no query has a valid"):
        evaluate_streaming(qf, gf, [5, 6], [1, 2, 1, 2], [0, 0], [1, 1, 1, 1])
    with pytest.raises(ValueError, match="distmat contains NaN"):
        evaluate_distances_streaming(np.full((2, 4), np.nan), *ids)
