"""jaccard_distance against a brute-force reference written from the set definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from unreid.pseudo_labels import jaccard_distance
from unreid.pseudo_labels.jaccard import half_size


def _ranking(d: np.ndarray) -> list[list[int]]:
    """Every point's full ranking: itself, then the others by (distance, index)."""
    n = d.shape[0]
    return [
        [p] + sorted((q for q in range(n) if q != p), key=lambda q: (d[p, q], q)) for p in range(n)
    ]


def reference_jaccard(x: np.ndarray, k1: int, k2: int, variant: str) -> np.ndarray:
    """Zhong et al. k-reciprocal Jaccard, literally, with sets and loops."""
    x = x.astype(np.float64)
    n = x.shape[0]
    d = 2.0 - 2.0 * x @ x.T
    rank = _ranking(d)

    def neighbourhood(p: int, k: int) -> set[int]:  # N(p, k): p + k neighbours
        return set(rank[p][: k + 1])

    def reciprocal(p: int, k: int) -> set[int]:  # R(p, k)
        return {g for g in neighbourhood(p, k) if p in neighbourhood(g, k)}

    if variant == "paper":
        k_full, k_half, qe = k1, math.floor(k1 / 2 + 0.5), k2
        enough = lambda inter, size: inter >= 2 / 3 * size  # noqa: E731
    else:  # the reference code: self + k1-1, Python/numpy banker's rounding, strict >
        k_full, k_half, qe = k1 - 1, round(k1 / 2), min(k2, k1)
        enough = lambda inter, size: inter > 2 / 3 * size  # noqa: E731

    v = np.zeros((n, n))
    for p in range(n):
        r = reciprocal(p, k_full)
        expanded = set(r)
        for q in r:
            rq = reciprocal(q, k_half)
            if enough(len(rq & r), len(rq)):
                expanded |= rq
        members = sorted(expanded)
        w = np.exp(-d[p, members])
        v[p, members] = w / w.sum()
    v = np.stack([v[rank[p][:qe]].mean(axis=0) for p in range(n)])
    out = np.empty((n, n))
    for p in range(n):
        out[p] = 1.0 - np.minimum(v[p], v).sum(axis=1) / np.maximum(v[p], v).sum(axis=1)
    return np.clip(out, 0.0, 1.0)


def clustered_features(seed: int, n: int, dim: int = 16, ids: int = 8, noise: float = 0.5):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(ids, dim))
    x = centres[rng.integers(0, ids, n)] + noise * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize(
    ("seed", "n", "k1", "k2", "variant"),
    [
        (0, 60, 5, 1, "paper"),
        (1, 60, 5, 3, "cluster_contrast"),
        (2, 120, 10, 4, "paper"),
        (3, 120, 9, 4, "cluster_contrast"),
        (4, 200, 20, 6, "paper"),
        (5, 200, 20, 6, "cluster_contrast"),
        (6, 90, 3, 7, "cluster_contrast"),  # k2 > k1: the reference truncates QE to k1 rows
        (7, 80, 1, 2, "paper"),
        (8, 80, 1, 2, "cluster_contrast"),
        (9, 400, 30, 6, "paper"),
        (10, 300, 30, 6, "cluster_contrast"),
    ],
)
def test_matches_brute_force(seed, n, k1, k2, variant):
    x = clustered_features(seed, n)
    got = jaccard_distance(x, k1=k1, k2=k2, variant=variant)
    assert got.dtype == np.float32 and got.shape == (n, n)
    np.testing.assert_allclose(got, reference_jaccard(x, k1, k2, variant), atol=1e-5, rtol=0)


@pytest.mark.parametrize("variant", ["paper", "cluster_contrast"])
def test_exact_ties_are_broken_by_index(variant):
    # exact duplicates of one-hot vectors: every distance is exactly 0 or 2
    rng = np.random.default_rng(0)
    x = np.eye(6, dtype=np.float32)[rng.integers(0, 6, 40)]
    got = jaccard_distance(x, k1=7, k2=3, variant=variant)
    np.testing.assert_allclose(got, reference_jaccard(x, 7, 3, variant), atol=1e-6, rtol=0)


@pytest.mark.parametrize("variant", ["paper", "cluster_contrast"])
def test_separated_groups_are_at_distance_one(variant):
    rng = np.random.default_rng(1)
    a = np.array([1.0, 0, 0]) + 0.05 * rng.normal(size=(12, 3))
    b = np.array([0, 1.0, 0]) + 0.05 * rng.normal(size=(12, 3))
    x = np.concatenate([a, b])
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    d = jaccard_distance(x, k1=8, k2=3, variant=variant)
    assert (d[:12, 12:] == 1.0).all() and (d[12:, :12] == 1.0).all()
    assert (d[:12, :12] < 1.0).all() and (d[12:, 12:] < 1.0).all()
    np.testing.assert_array_equal(np.diag(d), 0.0)
    np.testing.assert_array_equal(d, d.T)


def test_torch_input_and_float64_match_numpy():
    x = clustered_features(3, 70)
    ref = jaccard_distance(x, k1=6, k2=2)
    np.testing.assert_array_equal(jaccard_distance(torch.from_numpy(x), k1=6, k2=2), ref)
    np.testing.assert_array_equal(jaccard_distance(x.astype(np.float64), k1=6, k2=2), ref)


def test_half_size_rounding():
    assert [half_size(k, "paper") for k in (1, 2, 5, 9, 30)] == [1, 1, 3, 5, 15]
    assert [half_size(k, "cluster_contrast") for k in (1, 2, 5, 9, 30)] == [0, 1, 2, 4, 15]


def test_variants_differ_where_the_reference_code_deviates():
    x = clustered_features(4, 80)
    paper = jaccard_distance(x, k1=5, k2=2, variant="paper")
    cc = jaccard_distance(x, k1=5, k2=2, variant="cluster_contrast")
    assert not np.allclose(paper, cc)


@pytest.mark.parametrize(
    ("features", "kwargs", "message"),
    [
        (np.ones(5, dtype=np.float32), {}, "2-D"),
        (np.zeros((0, 4), dtype=np.float32), {}, "non-empty"),
        (np.full((5, 2), np.nan, dtype=np.float32), {}, "NaN"),
        (np.ones((5, 2), dtype=np.float32), {}, "L2-normalised"),
        (np.array([["a", "b"]]), {}, "numeric"),
        (np.eye(5, dtype=np.float32), {"k1": 5}, "k1 must be smaller"),
        (np.eye(5, dtype=np.float32), {"k1": 0}, "k1 must be an integer >= 1"),
        (np.eye(5, dtype=np.float32), {"k1": 2.0}, "k1 must be an integer"),
        (np.eye(5, dtype=np.float32), {"k1": 2, "k2": 0}, "k2 must be an integer >= 1"),
        (np.eye(5, dtype=np.float32), {"k1": 2, "k2": 6}, "k2 must be at most"),
        (np.eye(5, dtype=np.float32), {"k1": 2, "variant": "matlab"}, "variant must be one of"),
    ],
)
def test_bad_input_is_rejected(features, kwargs, message):
    with pytest.raises(ValueError, match=message):
        jaccard_distance(features, **kwargs)
