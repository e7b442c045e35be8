"""Rankings: self first, then distance, then index, whatever the ties."""

from __future__ import annotations

import numpy as np
import pytest

from unreid.neighbours import ambiguous_rows, ranked_neighbours, sort_candidates


def test_ranking_ties_and_fallback_path():
    # 20 orthogonal points: all pairwise distances tie, so the order is by index,
    # and the tie spans the whole top-k candidate window (full-sort fallback)
    x = np.eye(20, dtype=np.float32)
    ranks = ranked_neighbours(x, 4)
    for p in range(20):
        assert ranks[p].tolist() == [p] + [q for q in range(20) if q != p][:3]
    dup = np.eye(4, dtype=np.float32)[[2, 2, 0, 2]]
    assert ranked_neighbours(dup, 4).tolist() == [
        [0, 1, 3, 2],
        [1, 0, 3, 2],
        [2, 0, 1, 3],
        [3, 0, 1, 2],
    ]


def unit(n: int, dim: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_ranking_against_full_stable_sort():
    x = unit(150, 6, 0)
    sims = x.astype(np.float64) @ x.T.astype(np.float64)
    np.fill_diagonal(sims, np.inf)
    want = np.argsort(-sims, axis=1, kind="stable")[:, :12]
    assert np.array_equal(ranked_neighbours(x, 12), want)
    assert ranked_neighbours(x, 500).shape == (150, 150)  # depth is capped at N


@pytest.mark.parametrize("descending", [False, True])
def test_sort_candidates_breaks_ties_by_index(descending):
    vals = np.array([[0.5, 0.2, 0.5, 0.2], [1.0, 1.0, 1.0, 0.0]], dtype=np.float32)
    idx = np.array([[7, 9, 3, 1], [4, 2, 8, 5]])
    got_v, got_i = sort_candidates(vals, idx, descending=descending)
    if descending:
        assert got_i.tolist() == [[3, 7, 1, 9], [2, 4, 8, 5]]
    else:
        assert got_i.tolist() == [[1, 9, 3, 7], [5, 2, 4, 8]]
    # each value travels with its index
    for r in range(2):
        assert dict(zip(got_i[r], got_v[r], strict=True)) == dict(zip(idx[r], vals[r], strict=True))


def test_ambiguous_rows_flags_ties_reaching_the_last_candidate():
    vals = np.array([[0.9, 0.8, 0.7, 0.6], [0.9, 0.7, 0.7, 0.7], [0.9, 0.7, 0.7, 0.6]])
    assert ambiguous_rows(vals, 2).tolist() == [1]
    assert ambiguous_rows(vals, 3).tolist() == [1]
    assert ambiguous_rows(vals, 4).tolist() == [0, 1, 2]  # the cut-off is the last candidate
