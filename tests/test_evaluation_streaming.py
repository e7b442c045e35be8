"""Streaming evaluation against the dense argsort evaluator; re-ranking against its formula."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import unreid.evaluation as evaluation
import unreid.evaluation_streaming as streaming
from unreid.evaluation import evaluate_features, evaluate_ranking, pairwise_distance
from unreid.evaluation_streaming import (
    evaluate_distances_streaming,
    evaluate_streaming,
    match_positions,
    rerank_distances,
)


def labels(rng, nq, ng, ids=8, cams=3):
    return (
        rng.integers(0, ids + 2, nq),  # ids and ids + 1 never appear in the gallery
        rng.integers(-1, ids, ng),  # junk (-1) and identity 0 (a distractor when flagged)
        rng.integers(0, cams, nq),
        rng.integers(0, cams, ng),
    )


def assert_same(got, want):
    assert got.mAP == want.mAP  # bit-identical, not approximately equal
    np.testing.assert_array_equal(got.cmc, want.cmc)
    assert got.num_valid_queries == want.num_valid_queries
    assert got.num_skipped_queries == want.num_skipped_queries


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("chunk", [1, 7, None])
@pytest.mark.parametrize("distractor", [None, 0])
def test_distmat_path_identical_to_evaluate_ranking(ties, chunk, distractor):
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


def test_integer_and_float32_distmats():
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
def test_feature_path_identical_with_tied_distances(chunk):
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


def test_evaluate_features_routes_to_streaming(monkeypatch):
    rng = np.random.default_rng(2)
    qf, gf = rng.normal(size=(20, 16)), rng.normal(size=(60, 16))
    qp, gp, qc, gc = labels(rng, 20, 60)
    want = evaluate_ranking(pairwise_distance(qf, gf), qp, gp, qc, gc)

    def no_dense(*_args, **_kwargs):
        raise AssertionError("the dense (Q, G) matrix must not be built")

    monkeypatch.setattr(evaluation, "pairwise_distance", no_dense)
    monkeypatch.setattr(evaluation, "evaluate_ranking", no_dense)
    assert_same(evaluate_features(qf, gf, qp, gp, qc, gc), want)


def test_chunks_are_bounded(monkeypatch):
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
    assert streaming.default_chunk_size(82161) * 82161 <= 1 << 24
    assert streaming.default_chunk_size(10**9) == 1


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
    with pytest.raises(ValueError, match="k1 must be smaller"):
        rerank_distances(qf, gf, k1=6)
    with pytest.raises(ValueError, match="lambda_value"):
        rerank_distances(qf, gf, k1=2, k2=2, lambda_value=1.5)


# ---------------------------------------------------------------- re-ranking


def dense_rerank(qf, gf, k1, k2, lam):
    """Re-ranking written directly from the formula, dense and in float64."""
    x = np.concatenate([qf, gf]).astype(np.float64)
    nq, n = len(qf), len(x)
    d = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)  # squared Euclidean
    o = d**2
    o = o / o.max(axis=1, keepdims=True)
    rank = np.argsort(o, axis=1, kind="stable")

    def recip(i, k):
        fwd = rank[i, : k + 1]
        return [j for j in fwd if i in rank[j, : k + 1]]

    half = int(np.around(k1 / 2))
    v = np.zeros((n, n))
    for i in range(n):
        r = recip(i, k1)
        expanded = set(r)
        for c in r:
            rc = recip(c, half)
            if len(set(rc) & set(r)) > 2 / 3 * len(rc):
                expanded |= set(rc)
        idx = sorted(expanded)
        w = np.exp(-o[i, idx])
        v[i, idx] = w / w.sum()
    if k2 > 1:
        v = np.stack([v[rank[i, :k2]].mean(axis=0) for i in range(n)])
    m = np.minimum(v[:nq, None, :], v[None, nq:, :]).sum(-1)
    jac = 1 - m / (2 - m)
    return (1 - lam) * jac + lam * o[:nq, nq:]


@pytest.mark.parametrize(("k1", "k2", "lam", "chunk"), [(20, 6, 0.3, None), (5, 1, 0.5, 4)])
def test_rerank_matches_dense_formula(k1, k2, lam, chunk):
    rng = np.random.default_rng(7)
    centres = rng.normal(size=(6, 8))
    qf = centres[rng.integers(0, 6, 14)] + 0.6 * rng.normal(size=(14, 8))
    gf = centres[rng.integers(0, 6, 45)] + 0.6 * rng.normal(size=(45, 8))
    want = dense_rerank(qf, gf, k1, k2, lam)
    got = rerank_distances(qf, gf, k1=k1, k2=k2, lambda_value=lam, chunk_size=chunk)
    assert got.shape == (14, 45) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=2e-6)
    # and the re-ranked ranking is not simply the original one
    assert not np.array_equal(
        np.argsort(got, axis=1), np.argsort(pairwise_distance(qf, gf), axis=1)
    )


def test_rerank_streaming_equals_dense_rerank_evaluation():
    rng = np.random.default_rng(8)
    qf, gf = rng.normal(size=(12, 6)), rng.normal(size=(40, 6))
    qp, gp, qc, gc = labels(rng, 12, 40, ids=5)
    want = evaluate_ranking(rerank_distances(qf, gf, k1=8, k2=3, chunk_size=5), qp, gp, qc, gc)
    got = evaluate_streaming(qf, gf, qp, gp, qc, gc, rerank=True, k1=8, k2=3, chunk_size=5)
    assert_same(got, want)
    plain = evaluate_features(qf, gf, qp, gp, qc, gc)
    assert_same(evaluate_features(qf, gf, qp, gp, qc, gc, rerank=False), plain)
