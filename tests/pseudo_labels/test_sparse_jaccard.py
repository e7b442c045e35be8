"""Sparse Jaccard + sparse DBSCAN against the dense reference (itself tested against sets)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from unreid.pseudo_labels import (
    PseudoLabels,
    cluster_features,
    dbscan_labels,
    jaccard_distance,
    jaccard_from_neighbours,
    knn_search,
    sparse_jaccard_distance,
)
from unreid.pseudo_labels.sparse_jaccard import jaccard_depth


def clustered(n: int, dim: int, noise: float, seed: int) -> np.ndarray:
    """Unit features: identities of >= 4 samples around random unit centres."""
    rng = np.random.default_rng(seed)
    ids = max(1, n // 12)
    sizes = np.full(ids, 4) + np.bincount(rng.integers(0, ids, n - 4 * ids), minlength=ids)
    centres = rng.normal(size=(ids, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = np.repeat(centres, sizes, axis=0) + rng.normal(size=(n, dim)) * noise / np.sqrt(dim)
    x = x[rng.permutation(n)]
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def stored_mask(mat: sp.csr_matrix) -> np.ndarray:
    coo = mat.tocoo()
    mask = np.zeros(mat.shape, dtype=bool)
    mask[coo.row, coo.col] = True
    return mask


def assert_matches_dense(sparse: sp.csr_matrix, dense: np.ndarray, limit: float = 1.0) -> None:
    n = dense.shape[0]
    assert sparse.shape == (n, n) and sparse.format == "csr"
    mask = stored_mask(sparse)
    assert sparse.nnz == mask.sum()  # no duplicate entries
    np.testing.assert_allclose(sparse.toarray()[mask], dense[mask], rtol=0, atol=1e-5)
    assert mask.diagonal().all() and (sparse.diagonal() == 0).all()
    assert np.array_equal(mask, mask.T)
    if limit >= 1.0:
        assert (dense[~mask] == 1.0).all()
        # every pair with dense distance < 1 is stored (beyond rounding)
        assert mask[dense < 1.0 - 1e-5].all()
    else:
        assert (dense[~mask] > limit - 1e-5).all()
        assert mask[dense <= limit - 1e-5].all()
        assert (sparse.data <= limit).all()


CASES = [
    # n, dim, noise, seed, k1, k2, variant
    (200, 16, 0.6, 0, 20, 6, "paper"),
    (200, 16, 1.5, 1, 5, 1, "cluster_contrast"),
    (200, 8, 3.0, 2, 7, 3, "paper"),
    (800, 32, 1.0, 3, 30, 6, "paper"),
    (800, 32, 2.0, 4, 30, 6, "cluster_contrast"),
    (800, 32, 0.8, 5, 13, 20, "cluster_contrast"),
    (2000, 48, 1.2, 6, 30, 6, "paper"),
    (2000, 48, 2.5, 7, 20, 4, "cluster_contrast"),
]


@pytest.mark.parametrize(("n", "dim", "noise", "seed", "k1", "k2", "variant"), CASES)
def test_sparse_equals_dense_distances_and_labels(n, dim, noise, seed, k1, k2, variant) -> None:
    x = clustered(n, dim, noise, seed)
    dense = jaccard_distance(x, k1=k1, k2=k2, variant=variant)
    full = sparse_jaccard_distance(x, k1=k1, k2=k2, variant=variant)
    assert_matches_dense(full, dense)
    for eps in (0.3, 0.5, 0.6, 0.75):
        for min_samples in (2, 4):
            ref = dbscan_labels(dense, eps=eps, min_samples=min_samples)
            assert np.array_equal(dbscan_labels(full, eps=eps, min_samples=min_samples), ref)
    cut = sparse_jaccard_distance(x, k1=k1, k2=k2, variant=variant, max_distance=0.5)
    assert_matches_dense(cut, dense, limit=0.5)
    assert np.array_equal(dbscan_labels(cut, eps=0.5), dbscan_labels(dense, eps=0.5))
    got = cluster_features(x, k1=k1, k2=k2, eps=0.6, jaccard_variant=variant)  # max_distance=eps
    assert np.array_equal(got.labels, PseudoLabels(dbscan_labels(dense, eps=0.6)).labels)


def test_duplicates_keep_explicit_zero_distances() -> None:
    """Exact duplicates have distance 0 off the diagonal; they must stay stored."""
    base = clustered(120, 16, 1.0, 11)
    x = np.concatenate([base, base[:40], base[:40]])
    dense = jaccard_distance(x, k1=10, k2=3)
    sparse = sparse_jaccard_distance(x, k1=10, k2=3, max_distance=0.5)
    zeros = np.argwhere(dense == 0)
    assert (zeros[:, 0] != zeros[:, 1]).any()
    mask = stored_mask(sparse)
    assert mask[zeros[:, 0], zeros[:, 1]].all()
    assert_matches_dense(sparse, dense, limit=0.5)
    # duplicates make V piecewise equal, so some distances are exact fractions (0.5
    # exactly for rows 85/49 here) that each side rounds to either side of that eps:
    # compare away from such values
    for eps in (1e-9, 0.23, 0.47):
        for min_samples in (2, 3, 4):
            assert np.array_equal(
                dbscan_labels(sparse, eps=eps, min_samples=min_samples),
                dbscan_labels(dense, eps=eps, min_samples=min_samples),
            )


def test_torch_input_and_neighbour_split_agree() -> None:
    x = clustered(300, 24, 1.0, 12)
    ref = sparse_jaccard_distance(x, k1=15, k2=4)
    via_torch = sparse_jaccard_distance(torch.from_numpy(x), k1=15, k2=4, knn="torch")
    sims, idx = knn_search(x, jaccard_depth(15, 4, "paper") + 5)
    split = jaccard_from_neighbours(x, sims, idx, k1=15, k2=4)
    for other in (via_torch, split):
        assert np.array_equal(stored_mask(other), stored_mask(ref))
        np.testing.assert_allclose(other.toarray(), ref.toarray(), atol=1e-6)


def test_hnsw_with_full_recall_gives_exact_labels() -> None:
    x = clustered(400, 16, 1.0, 13)
    exact = cluster_features(x, k1=20, k2=6, eps=0.6)
    approx = cluster_features(x, k1=20, k2=6, eps=0.6, knn="hnsw")
    _, i_exact = knn_search(x, 21)
    _, i_hnsw = knn_search(x, 21, method="hnsw", ef_search=400)
    if np.array_equal(i_exact, i_hnsw):  # a tiny index at this breadth finds everything
        assert approx == exact
    assert approx.num_clusters > 0


def test_depth() -> None:
    assert jaccard_depth(30, 6, "paper") == 31
    assert jaccard_depth(30, 6, "cluster_contrast") == 30
    assert jaccard_depth(5, 40, "paper") == 40
    assert jaccard_depth(5, 40, "cluster_contrast") == 5


def test_sparse_dbscan_rejects_eps_at_or_above_one() -> None:
    mat = sp.csr_matrix(np.eye(3) * 0.0)
    mat.setdiag(0.0)
    with pytest.raises(ValueError, match="eps must be < 1"):
        dbscan_labels(mat, eps=1.0)
    with pytest.raises(ValueError, match="eps must be < 1"):
        cluster_features(clustered(40, 8, 1.0, 0), k1=5, eps=1.5)
    with pytest.raises(ValueError, match="square"):
        dbscan_labels(sp.csr_matrix((2, 3)), eps=0.5)
    bad = sp.csr_matrix(np.array([[0.0, -0.1], [-0.1, 0.0]]))
    with pytest.raises(ValueError, match="non-negative"):
        dbscan_labels(bad, eps=0.5)
    nan = sp.csr_matrix(np.array([[0.0, np.nan], [np.nan, 0.0]]))
    with pytest.raises(ValueError, match="NaN"):
        dbscan_labels(nan, eps=0.5)


def test_bad_arguments() -> None:
    x = clustered(60, 8, 1.0, 1)
    with pytest.raises(ValueError, match="max_distance"):
        sparse_jaccard_distance(x, k1=5, max_distance=1.5)
    with pytest.raises(ValueError, match="variant"):
        sparse_jaccard_distance(x, k1=5, variant="nope")
    with pytest.raises(ValueError, match="knn"):
        sparse_jaccard_distance(x, k1=5, knn="annoy")
    with pytest.raises(ValueError, match="k1 must be smaller"):
        sparse_jaccard_distance(x, k1=60)
    with pytest.raises(ValueError, match="L2-normalised"):
        sparse_jaccard_distance(x * 2, k1=5)
    with pytest.raises(ValueError, match="knn"):
        cluster_features(x, k1=5, knn="annoy")
    with pytest.raises(ValueError, match="only supports knn='exact'"):
        cluster_features(x, k1=5, knn="hnsw", jaccard_impl="dense")
    with pytest.raises(ValueError, match="jaccard_impl"):
        cluster_features(x, k1=5, jaccard_impl="faiss")
    sims, idx = knn_search(x, 6)
    with pytest.raises(ValueError, match="self at rank 0"):
        jaccard_from_neighbours(x, sims, idx[:, ::-1].copy(), k1=5, k2=1)
    with pytest.raises(ValueError, match=r"\(N=60, >= 6\)"):
        jaccard_from_neighbours(x, sims[:, :4], idx[:, :4], k1=5, k2=1)


@pytest.mark.parametrize("reduce", ["dense", "sorted"])
@pytest.mark.parametrize(("buffer", "chunk"), [(1 << 10, 1 << 10), (1 << 14, 1 << 13)])
def test_both_pair_reductions_with_small_blocks(monkeypatch, reduce, buffer, chunk) -> None:
    """Either per-pair reduction, with tiny block limits (many row blocks), matches dense."""
    from unreid.pseudo_labels import jaccard_pairs, sparse_jaccard

    x = clustered(300, 24, 1.2, 14)
    dense = jaccard_distance(x, k1=20, k2=6)
    ratio = float("inf") if reduce == "dense" else 0.0
    monkeypatch.setattr(jaccard_pairs, "_DENSE_COST_RATIO", ratio)
    monkeypatch.setattr(jaccard_pairs, "_BUFFER_ELEMS", buffer)
    monkeypatch.setattr(jaccard_pairs, "_PAIR_CHUNK", chunk)
    monkeypatch.setattr(sparse_jaccard, "_ROW_BLOCK", 128)
    full = sparse_jaccard_distance(x, k1=20, k2=6)
    assert_matches_dense(full, dense)
    cut = sparse_jaccard_distance(x, k1=20, k2=6, max_distance=0.6)
    assert_matches_dense(cut, dense, limit=0.6)
    assert np.array_equal(dbscan_labels(cut, eps=0.6), dbscan_labels(dense, eps=0.6))


def test_sorted_reduction_keeps_duplicates_at_zero(monkeypatch) -> None:
    """The large-N reduction sums in float64: duplicate rows still land at distance ~0."""
    from unreid.pseudo_labels import jaccard_pairs

    monkeypatch.setattr(jaccard_pairs, "_DENSE_COST_RATIO", 0.0)
    base = clustered(120, 16, 1.0, 11)
    x = np.concatenate([base, base[:40]])
    dense = jaccard_distance(x, k1=10, k2=3)
    sparse = sparse_jaccard_distance(x, k1=10, k2=3, max_distance=0.5)
    assert_matches_dense(sparse, dense, limit=0.5)
    assert np.array_equal(dbscan_labels(sparse, eps=1e-9), dbscan_labels(dense, eps=1e-9))
