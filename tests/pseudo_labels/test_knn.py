"""kNN backends: same rankings as the dense reference, recall measurement."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unreid.neighbours import ranked_neighbours
from unreid.pseudo_labels import knn_recall, knn_search


def unit(n: int, dim: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("method", ["exact", "torch"])
def test_exact_backends_match_reference_ranking(method: str) -> None:
    x = unit(500, 16, 0)
    sims, idx = knn_search(x, 25, method=method)
    assert np.array_equal(idx, ranked_neighbours(x, 25))
    want = (x[:, None, :] * x[idx]).sum(axis=2)
    np.testing.assert_allclose(sims, want, atol=1e-5)
    assert sims.dtype == np.float32 and idx.dtype == np.int64


def test_torch_and_faiss_agree_on_torch_cpu_tensor() -> None:
    x = unit(700, 32, 1)
    s_faiss, i_faiss = knn_search(x, 31, method="exact")
    s_torch, i_torch = knn_search(torch.from_numpy(x), 31, method="torch")
    assert np.array_equal(i_faiss, i_torch)
    np.testing.assert_allclose(s_faiss, s_torch, atol=1e-5)


@pytest.mark.parametrize("method", ["exact", "torch"])
def test_ties_broken_by_index_and_self_first(method: str) -> None:
    """Many exact ties (duplicates, a coarse grid): order is (similarity, index), self first."""
    rng = np.random.default_rng(2)
    grid = rng.integers(-1, 2, size=(60, 3)).astype(np.float32)
    grid[(grid == 0).all(axis=1)] = 1.0
    x = np.concatenate([grid, grid[:20]])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    _, idx = knn_search(x, 30, method=method)
    assert np.array_equal(idx[:, 0], np.arange(80))
    assert np.array_equal(idx, ranked_neighbours(x, 30))


def test_queries_subset() -> None:
    x = unit(300, 8, 3)
    _, full = knn_search(x, 10)
    rows = np.array([5, 0, 299, 17])
    _, part = knn_search(x, 10, queries=rows)
    assert np.array_equal(part, full[rows])


def test_recall_is_one_for_exact_and_counts_misses() -> None:
    x = unit(400, 16, 4)
    _, idx = knn_search(x, 11)
    assert knn_recall(x, idx, 10, sample=400) == 1.0
    assert knn_recall(x, idx, 10, sample=50, seed=3) == 1.0
    broken = idx.copy()
    broken[:, 6:] = idx[:, 0:1]  # columns 6..10 point to self: 5 of 10 neighbours lost
    assert knn_recall(x, broken, 10, sample=400) == pytest.approx(0.5)


def test_hnsw_is_ranked_and_recall_reported() -> None:
    x = unit(2000, 16, 5)
    sims, idx = knn_search(x, 11, method="hnsw", hnsw_m=8, ef_search=16)
    assert np.array_equal(idx[:, 0], np.arange(2000))
    assert (np.diff(sims[:, 1:], axis=1) <= 0).all()
    got = (x[:, None, :] * x[idx]).sum(axis=2)
    np.testing.assert_allclose(sims, got, atol=1e-5)  # true similarities of what it found
    recall = knn_recall(x, idx, 10, sample=500)
    assert 0.5 < recall <= 1.0
    _, wide = knn_search(x, 11, method="hnsw", hnsw_m=32, ef_search=512)
    assert knn_recall(x, wide, 10, sample=500) >= recall


def test_ivf_is_ranked_and_recall_grows_with_nprobe() -> None:
    x = unit(3000, 16, 6)
    sims, idx = knn_search(x, 11, method="ivf", ivf_nlist=64, ivf_nprobe=1)
    assert np.array_equal(idx[:, 0], np.arange(3000))
    assert (np.diff(sims[:, 1:], axis=1) <= 0).all()
    got = (x[:, None, :] * x[idx]).sum(axis=2)
    np.testing.assert_allclose(sims, got, atol=1e-5)
    narrow = knn_recall(x, idx, 10, sample=500)
    assert 0.2 < narrow < 1.0  # one cell of 64 misses neighbours across cell borders
    _, wide = knn_search(x, 11, method="ivf", ivf_nlist=64, ivf_nprobe=16)
    assert knn_recall(x, wide, 10, sample=500) > narrow
    _, every = knn_search(x, 11, method="ivf", ivf_nlist=64, ivf_nprobe=64)
    _, exact = knn_search(x, 11, method="torch")
    assert knn_recall(x, every, 10, sample=500) == 1.0  # scanning all cells is exhaustive
    assert np.array_equal(np.sort(every[:, 1:], axis=1), np.sort(exact[:, 1:], axis=1))
    with pytest.raises(ValueError, match="ivf_nprobe"):
        knn_search(x, 11, method="ivf", ivf_nprobe=0)
    with pytest.raises(ValueError, match="ivf_nlist"):
        knn_search(x, 11, method="ivf", ivf_nlist=5000)


def test_bad_arguments() -> None:
    x = unit(20, 4, 6)
    with pytest.raises(ValueError, match="method"):
        knn_search(x, 5, method="annoy")
    with pytest.raises(ValueError, match="depth"):
        knn_search(x, 21)
    with pytest.raises(ValueError, match="depth"):
        knn_search(x, 0)
    with pytest.raises(ValueError, match="queries"):
        knn_search(x, 5, queries=np.array([20]))
    with pytest.raises(ValueError, match="L2-normalised"):
        knn_search(torch.from_numpy(x * 3), 5, method="torch")
    with pytest.raises(ValueError, match="floating"):
        knn_search(torch.ones(4, 2, dtype=torch.int64), 2, method="torch")
    _, idx = knn_search(x, 5)
    with pytest.raises(ValueError, match="k \\+ 1"):
        knn_recall(x, idx, 5)
    with pytest.raises(ValueError, match="neighbours must be"):
        knn_recall(x, idx[:10], 4)
