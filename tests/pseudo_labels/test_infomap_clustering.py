"""InfoMap clustering: recovery of clear clusters, outlier rules, threshold, determinism."""

from __future__ import annotations

import sys
from importlib.util import find_spec

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

from unreid.pseudo_labels.infomap_clustering import infomap_labels, knn_edges

needs_infomap = pytest.mark.skipif(find_spec("infomap") is None, reason="infomap not installed")


def _unit(a: np.ndarray) -> np.ndarray:
    return (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)


def _blobs(
    sizes: list[int], dim: int = 64, noise: float = 0.05, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Unit features around random (nearly orthogonal) unit centres; returns (x, ids)."""
    rng = np.random.default_rng(seed)
    centres = _unit(rng.normal(size=(len(sizes), dim)))
    ids = np.repeat(np.arange(len(sizes)), sizes)
    x = centres[ids] + noise * rng.normal(size=(ids.size, dim))
    return _unit(x), ids


@needs_infomap
def test_separated_blobs_are_recovered_exactly() -> None:
    x, ids = _blobs([12, 9, 15, 7, 10, 8])
    labels = infomap_labels(x, k=10)
    assert labels.dtype == np.int64 and labels.shape == ids.shape
    assert (labels >= 0).all()  # every blob is large enough and tight enough
    assert adjusted_rand_score(ids, labels) == 1.0
    # ids are 0..C-1, numbered by each cluster's first member
    first_seen = labels[np.sort(np.unique(labels, return_index=True)[1])]
    np.testing.assert_array_equal(first_seen, np.arange(6))


@needs_infomap
def test_clusters_smaller_than_min_size_become_outliers() -> None:
    x, ids = _blobs([10, 10, 5, 4, 3, 2])
    labels = infomap_labels(x, k=8)  # default min_cluster_size=5: size <= 4 is an outlier
    big = ids <= 2
    assert (labels[~big] == -1).all()
    assert adjusted_rand_score(ids[big], labels[big]) == 1.0 and (labels[big] >= 0).all()

    labels3 = infomap_labels(x, k=8, min_cluster_size=3)
    kept = ids <= 4
    assert (labels3[~kept] == -1).all()
    assert adjusted_rand_score(ids[kept], labels3[kept]) == 1.0 and (labels3[kept] >= 0).all()


@needs_infomap
def test_points_without_a_neighbour_above_threshold_are_outliers() -> None:
    x, ids = _blobs([10, 10, 10], dim=256)
    rng = np.random.default_rng(1)
    lone = _unit(rng.normal(size=(6, 256)))  # random directions: |cos| ~ 0.06 << 0.5
    feats = np.concatenate([x, lone])
    labels = infomap_labels(feats, k=8)
    assert (labels[len(x) :] == -1).all()
    assert (labels[: len(x)] >= 0).all()
    assert adjusted_rand_score(ids, labels[: len(x)]) == 1.0


@needs_infomap
def test_threshold_above_every_similarity_makes_everything_an_outlier() -> None:
    x, _ = _blobs([10, 10, 10], noise=0.1)
    sims = x.astype(np.float64) @ x.T.astype(np.float64)
    np.fill_diagonal(sims, -np.inf)
    i, j = np.unravel_index(np.argmax(sims), sims.shape)
    top = float(sims[i, j])
    assert top < 0.99
    assert (infomap_labels(x, k=8, min_sim=top + 1e-3) == -1).all()
    # just below the top similarity only the most similar pair is linked
    labels = infomap_labels(x, k=8, min_sim=top - 1e-4, min_cluster_size=2)
    assert labels[i] == labels[j] == 0
    assert np.count_nonzero(labels >= 0) == 2


def test_knn_edges_respect_threshold_drop_self_and_match_brute_force() -> None:
    x, _ = _blobs([8, 8, 8], noise=0.12, seed=3)
    k = 6
    sims = x.astype(np.float64) @ x.T.astype(np.float64)
    # a threshold inside the neighbour similarities, so some kNN edges are cut and some kept
    min_sim = float(np.median(np.sort(sims, axis=1)[:, -k:-1]))
    assert np.abs(sims - min_sim).min() > 1e-5  # float32 vs float64 cannot flip an edge
    src, dst, w = knn_edges(x, k, min_sim)
    assert (src != dst).all()
    assert (w >= min_sim).all()
    assert np.bincount(src, minlength=len(x)).max() <= k - 1
    np.testing.assert_allclose(w, sims[src, dst], atol=1e-5)
    expected = set()
    for i in range(len(x)):
        order = np.argsort(-sims[i], kind="stable")[:k]  # self is among the k (sim 1)
        expected |= {(i, int(j)) for j in order if j != i and sims[i, j] >= min_sim}
    assert set(zip(src.tolist(), dst.tolist(), strict=True)) == expected
    assert 0 < len(expected) < len(x) * (k - 1)


@needs_infomap
def test_deterministic_given_seed_and_accepts_torch_input() -> None:
    # noisy enough that InfoMap's search has choices, so other seeds can end elsewhere
    x, _ = _blobs([20, 15, 12, 9, 30, 25], noise=0.14, seed=5)
    a = infomap_labels(x, seed=0)
    assert 0 < np.count_nonzero(a >= 0) < len(x)
    np.testing.assert_array_equal(infomap_labels(x, seed=0), a)
    np.testing.assert_array_equal(infomap_labels(torch.from_numpy(x), seed=0), a)
    np.testing.assert_array_equal(infomap_labels(x.astype(np.float64), seed=0), a)
    others = [infomap_labels(x, seed=s) for s in range(1, 6)]
    assert any(not np.array_equal(o, a) for o in others)  # the seed does reach InfoMap


def test_missing_infomap_package_raises_helpful_import_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "infomap", None)  # makes `import infomap` fail
    x, _ = _blobs([6, 6])
    with pytest.raises(ImportError, match="pip install infomap"):
        infomap_labels(x, k=4)


@pytest.mark.parametrize(
    ("features", "kwargs", "message"),
    [
        (np.ones((10, 4), dtype=np.float32), {}, "L2-normalised"),
        (np.full((10, 4), np.nan, dtype=np.float32), {}, "NaN"),
        (np.ones(4, dtype=np.float32), {}, "2-D"),
        (np.zeros((0, 4), dtype=np.float32), {}, "non-empty"),
        (None, {"k": 20}, "k must be smaller"),
        (None, {"k": 1}, "k must be >= 2"),
        (None, {"k": 3.0}, "k must be an integer"),
        (None, {"k": True}, "k must be an integer"),
        (None, {"min_sim": 0.0}, r"min_sim must be in \(0, 1\]"),
        (None, {"min_sim": 1.5}, r"min_sim must be in \(0, 1\]"),
        (None, {"min_sim": float("nan")}, r"min_sim must be in \(0, 1\]"),
        (None, {"min_sim": "0.5"}, "min_sim must be a real number"),
        (None, {"min_cluster_size": 0}, "min_cluster_size must be >= 1"),
        (None, {"seed": -1}, "seed must be >= 0"),
        (None, {"seed": 2**32}, "seed must be >= 0 and <= "),
    ],
)
def test_invalid_input_is_rejected(
    features: np.ndarray | None, kwargs: dict[str, object], message: str
) -> None:
    if features is None:
        features, _ = _blobs([10, 10])
        kwargs = {"k": 5, **kwargs}
    with pytest.raises(ValueError, match=message):
        infomap_labels(features, **kwargs)  # type: ignore[arg-type]
