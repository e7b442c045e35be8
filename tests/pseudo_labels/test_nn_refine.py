"""Neighbours-of-neighbours refinement: one round against its definition, brute force."""

from __future__ import annotations

import numpy as np
import pytest

from unreid.pseudo_labels import knn_recall, knn_search
from unreid.pseudo_labels.nn_refine import refine, refine_rows, reverse_neighbours


def unit(n: int, dim: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def rough_lists(x: np.ndarray, width: int, pool: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's best ``width - 1`` of ``pool`` random other rows, ranked, self first."""
    n = x.shape[0]
    rng = np.random.default_rng(seed)
    idx = np.empty((n, width), dtype=np.int64)
    for p in range(n):
        others = rng.choice(np.delete(np.arange(n), p), pool, replace=False)
        sims = x[others].astype(np.float64) @ x[p]
        idx[p] = [p, *others[np.lexsort((others, -sims))][: width - 1]]
    sims = np.einsum("nd,nkd->nk", x.astype(np.float64), x[idx].astype(np.float64))
    return sims.astype(np.float32), idx


def brute_round(x: np.ndarray, idx: np.ndarray, m: int) -> np.ndarray:
    """The round from its definition, with Python sets and float64 products."""
    n, width = idx.shape
    nearest = [list(idx[p, 1 : m + 1]) for p in range(n)]
    out = np.empty_like(idx)
    for p in range(n):
        reverse = [q for q in range(n) if p in nearest[q]][:m]  # lowest ids first
        found = {c for q in nearest[p] + reverse for c in nearest[q]}
        pool = np.array(sorted((found | set(idx[p, 1:])) - {p}))
        sims = x[pool].astype(np.float64) @ x[p].astype(np.float64)
        out[p] = [p, *pool[np.lexsort((pool, -sims))][: width - 1]]
    return out


@pytest.mark.parametrize("m", [1, 3, 6])
def test_a_round_equals_its_definition(m: int) -> None:
    x = unit(160, 12, 0)
    sims, idx = rough_lists(x, 9, 20, 1)
    new_sims, new_idx = refine_rows(x, sims, idx, explore=m)
    assert np.array_equal(new_idx, brute_round(x, idx, m))
    exact = np.einsum("nd,nkd->nk", x.astype(np.float64), x[new_idx].astype(np.float64))
    np.testing.assert_allclose(new_sims, exact, atol=1e-6)
    assert (new_sims[:, 1:] >= sims[:, 1:] - 1e-6).all()  # never a worse i-th neighbour
    assert (new_idx != idx).any()


def test_rows_refined_apart_equal_their_part_of_the_whole() -> None:
    x = unit(200, 8, 2)
    sims, idx = rough_lists(x, 7, 15, 3)
    whole_s, whole_i = refine_rows(x, sims, idx)
    rows = np.array([150, 3, 77, 3, 199])
    part_s, part_i = refine_rows(x, sims, idx, rows)
    assert np.array_equal(part_i, whole_i[rows])
    assert np.array_equal(part_s, whole_s[rows])


def test_reverse_neighbours_keep_the_lowest_ids() -> None:
    top = np.array([[1, 2], [2, 0], [1, 0], [2, 1]])
    rev = reverse_neighbours(top, 2)
    assert rev.tolist() == [[1, 2], [0, 2], [0, 1], [-1, -1]]


def test_rounds_raise_recall_of_approximate_lists() -> None:
    x = unit(600, 6, 4)
    kw = {"method": "ivf", "ivf_nlist": 15, "ivf_nprobe": 2}  # recall 0.80 -> 0.94 -> 0.98
    _, base = knn_search(x, 11, refine=0, **kw)
    sims, once = knn_search(x, 11, refine=1, **kw)
    again = refine(x, sims, once, 1)[1]
    recall = [knn_recall(x, i, 10, sample=600) for i in (base, once, again)]
    assert recall[0] + 0.1 < recall[1] < recall[2] and recall[2] > 0.95, recall


def test_bad_input_names_what_is_wrong() -> None:
    x = unit(50, 4, 5)
    sims, idx = knn_search(x, 6, method="torch")
    with pytest.raises(ValueError, match="knn_refine must be an integer >= 0, found -1"):
        knn_search(x, 6, method="ivf_whitened", refine=-1)
    with pytest.raises(ValueError, match="knn_refine"):
        refine(x, sims, idx, True)
    with pytest.raises(ValueError, match="explore"):
        refine_rows(x, sims, idx, explore=0)
    with pytest.raises(ValueError, match="must agree on N"):
        refine_rows(x[:40], sims, idx)
    with pytest.raises(ValueError, match="queries must be all 50 rows"):
        knn_search(x, 6, method="hnsw", queries=np.arange(10))
    knn_search(x, 6, method="hnsw", queries=np.arange(10), refine=0)  # a subset, unrefined


def test_exact_backends_ignore_the_rounds() -> None:
    x = unit(80, 5, 6)
    assert np.array_equal(
        knn_search(x, 8, method="torch", refine=3)[1], knn_search(x, 8, method="torch")[1]
    )
