"""Reciprocal sets, R* expansion and query expansion against their set definitions."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from unreid.neighbours import expanded_pairs, query_expansion, ranked_neighbours, reciprocal_sets


def ranking(n: int, seed: int, depth: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(5, 8))
    x = centres[rng.integers(0, 5, n)] + 0.7 * rng.normal(size=(n, 8))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    return ranked_neighbours(x, depth)


def reciprocal(ranks: np.ndarray, p: int, size: int) -> set[int]:
    return {int(g) for g in ranks[p, :size] if p in ranks[g, :size]}


@pytest.mark.parametrize("size", [1, 3, 8])
def test_reciprocal_sets_match_definition(size):
    ranks = ranking(60, 0, 10)
    fwd, mask = reciprocal_sets(ranks, size)
    assert fwd.shape == mask.shape == (60, size)
    assert np.array_equal(fwd, ranks[:, :size]) and mask[:, 0].all()  # p is in its own set
    for p in range(60):
        assert set(fwd[p][mask[p]].tolist()) == reciprocal(ranks, p, size)


@pytest.mark.parametrize("strict", [False, True])
def test_expanded_pairs_match_definition(strict):
    ranks = ranking(80, 1, 12)
    full, half = reciprocal_sets(ranks, 11), reciprocal_sets(ranks, 6)
    rows, cols = expanded_pairs(full, half, strict)
    assert rows.dtype == cols.dtype == np.int64
    keys = rows * 80 + cols
    assert np.array_equal(keys, np.unique(keys))  # sorted, unique
    got = {p: set() for p in range(80)}
    for p, g in zip(rows.tolist(), cols.tolist(), strict=True):
        got[p].add(g)
    grew = 0
    for p in range(80):
        r = reciprocal(ranks, p, 11)
        want = set(r)
        for q in r:
            rq = reciprocal(ranks, q, 6)
            inter = len(rq & r)
            if (3 * inter > 2 * len(rq)) if strict else (3 * inter >= 2 * len(rq)):
                want |= rq
        grew += len(want) > len(r)
        assert got[p] == want
    assert grew > 0  # the expansion step is exercised


def test_query_expansion_is_the_mean_over_the_first_k2():
    ranks = ranking(30, 2, 5)
    rng = np.random.default_rng(3)
    dense = rng.random((30, 30)) * (rng.random((30, 30)) < 0.2)
    v = sp.csr_matrix(dense)
    got = query_expansion(v, ranks, 3)
    want = np.stack([dense[ranks[p, :3]].mean(axis=0) for p in range(30)])
    np.testing.assert_allclose(got.toarray(), want, rtol=1e-12, atol=0)
    assert query_expansion(v, ranks, 1) is v  # k2 = 1: nothing to average
