"""k-reciprocal re-ranking against its formula written out densely."""

from __future__ import annotations

import numpy as np
import pytest

from unreid.evaluation.dense import evaluate_ranking, pairwise_distance
from unreid.evaluation.rerank import rerank_chunks, rerank_distances
from unreid.evaluation.streaming import evaluate_features, evaluate_streaming


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


def test_rerank_streaming_equals_dense_rerank_evaluation(labels, assert_same):
    rng = np.random.default_rng(8)
    qf, gf = rng.normal(size=(12, 6)), rng.normal(size=(40, 6))
    qp, gp, qc, gc = labels(rng, 12, 40, ids=5)
    want = evaluate_ranking(rerank_distances(qf, gf, k1=8, k2=3, chunk_size=5), qp, gp, qc, gc)
    got = evaluate_streaming(qf, gf, qp, gp, qc, gc, rerank=True, k1=8, k2=3, chunk_size=5)
    assert_same(got, want)
    plain = evaluate_features(qf, gf, qp, gp, qc, gc)
    assert_same(evaluate_features(qf, gf, qp, gp, qc, gc, rerank=False), plain)


def test_chunks_cover_the_rows_in_order():
    rng = np.random.default_rng(9)
    qf, gf = rng.normal(size=(11, 5)), rng.normal(size=(30, 5))
    starts, blocks = zip(*rerank_chunks(qf, gf, k1=6, k2=2, chunk_size=4), strict=True)
    assert starts == (0, 4, 8) and [b.shape for b in blocks] == [(4, 30), (4, 30), (3, 30)]
    same_chunks = rerank_distances(qf, gf, k1=6, k2=2, chunk_size=4)
    np.testing.assert_array_equal(np.concatenate(blocks), same_chunks)
    # another chunking changes only BLAS rounding in the last bits
    whole = rerank_distances(qf, gf, k1=6, k2=2)
    np.testing.assert_allclose(np.concatenate(blocks), whole, rtol=1e-5, atol=1e-6)


def test_bad_rerank_arguments():
    qf, gf = np.zeros((2, 3)), np.ones((4, 3))
    with pytest.raises(ValueError, match="k1 must be smaller"):
        rerank_distances(qf, gf, k1=6)
    with pytest.raises(ValueError, match="lambda_value"):
        rerank_distances(qf, gf, k1=2, k2=2, lambda_value=1.5)
    with pytest.raises(ValueError, match="k2 must be at most"):
        rerank_distances(qf, gf, k1=2, k2=7)
    with pytest.raises(ValueError, match="same feature dimension"):
        rerank_distances(qf, np.ones((4, 5)), k1=2, k2=2)
