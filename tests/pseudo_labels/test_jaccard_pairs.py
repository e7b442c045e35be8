"""pair_distances: the sparse sum of minima against a dense brute force, both reductions."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from unreid.pseudo_labels import jaccard_pairs
from unreid.pseudo_labels.jaccard_pairs import pair_distances


def encoding(n: int, seed: int, density: float = 0.15) -> sp.csr_matrix:
    """Random sparse V with rows summing to 1 (as query-expanded softmax weights do)."""
    rng = np.random.default_rng(seed)
    dense = rng.random((n, n)) * (rng.random((n, n)) < density)
    dense[np.arange(n), rng.integers(0, n, n)] += 0.1  # no empty row
    dense[7] = dense[3]  # a duplicate: distance exactly 0
    dense /= dense.sum(axis=1, keepdims=True)
    out = sp.csr_matrix(dense)
    out.sort_indices()
    return out


def brute_force(v: sp.csr_matrix) -> np.ndarray:
    d = v.toarray()
    mins = np.minimum(d[:, None, :], d[None, :, :]).sum(-1)
    maxs = np.maximum(d[:, None, :], d[None, :, :]).sum(-1)
    return np.clip(1.0 - mins / maxs, 0.0, 1.0)


@pytest.mark.parametrize("reduce", ["dense", "sorted"])
@pytest.mark.parametrize("limit", [1.0, 0.9])
@pytest.mark.parametrize("buffer", [1 << 24, 1 << 8])
def test_pairs_match_brute_force(monkeypatch, reduce, limit, buffer):
    monkeypatch.setattr(
        jaccard_pairs, "_DENSE_COST_RATIO", float("inf") if reduce == "dense" else 0
    )
    monkeypatch.setattr(jaccard_pairs, "_BUFFER_ELEMS", buffer)
    monkeypatch.setattr(jaccard_pairs, "_PAIR_CHUNK", 1 << 9)
    v = encoding(50, 0)
    want = brute_force(v)
    p, g, d = pair_distances(v, limit)
    assert p.dtype == g.dtype == np.int64 and d.dtype == np.float32
    assert (p < g).all()  # upper triangle only
    keys = p * 50 + g
    assert np.unique(keys).size == keys.size
    np.testing.assert_allclose(d, want[p, g], atol=1e-6, rtol=0)
    assert (d <= limit).all()
    found = np.zeros((50, 50), dtype=bool)
    found[p, g] = True
    upper = np.triu(np.ones((50, 50), dtype=bool), 1)
    assert found[upper & (want < min(limit, 1.0) - 1e-5)].all()  # nothing closer is missed
    assert d[(p == 3) & (g == 7)].tolist() == [0.0]


def test_no_shared_column_gives_no_pair():
    v = sp.csr_matrix(np.eye(4))
    p, g, d = pair_distances(v, 1.0)
    assert p.size == g.size == d.size == 0
