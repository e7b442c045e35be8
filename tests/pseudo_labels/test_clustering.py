"""dbscan_labels, PseudoLabels and the cluster_features entry point."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from unreid.pseudo_labels import PseudoLabels, cluster_features, dbscan_labels


def reference_dbscan(dist: np.ndarray, eps: float, min_samples: int):
    """Core points, their connected components, and which points are noise."""
    n = dist.shape[0]
    near = dist <= eps
    core = near.sum(axis=1) >= min_samples
    comp = -np.ones(n, dtype=int)
    for s in range(n):
        if not core[s] or comp[s] >= 0:
            continue
        comp[s], stack = s, [s]
        while stack:
            p = stack.pop()
            for q in range(n):
                if near[p, q] and core[q] and comp[q] < 0:
                    comp[q] = s
                    stack.append(q)
    noise = [not core[i] and not (near[i] & core).any() for i in range(n)]
    return core, comp, np.array(noise)


def random_distances(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pts = rng.normal(size=(n, 2)) + rng.integers(0, 4, size=(n, 1)) * 3.0
    return np.linalg.norm(pts[:, None] - pts[None], axis=2)


@pytest.mark.parametrize(("seed", "eps", "min_samples"), [(0, 0.8, 4), (1, 0.5, 3), (2, 1.2, 6)])
def test_dbscan_matches_definition(seed, eps, min_samples):
    dist = random_distances(seed, 120)
    got = dbscan_labels(dist, eps=eps, min_samples=min_samples)
    assert got.dtype == np.int64 and got.shape == (120,)
    core, comp, noise = reference_dbscan(dist, eps, min_samples)
    np.testing.assert_array_equal(got == -1, noise)
    # core points: same cluster iff same component
    c = np.nonzero(core)[0]
    np.testing.assert_array_equal(
        got[c][:, None] == got[c][None], comp[c][:, None] == comp[c][None]
    )
    # border points join the cluster of one of their core neighbours
    for i in np.nonzero(~core & ~noise)[0]:
        assert got[i] in set(got[(dist[i] <= eps) & core])


def test_dbscan_hand_made():
    pts = np.array([0.0, 0.1, 0.2, 0.3, 5.0, 5.1, 5.2, 20.0])
    dist = np.abs(pts[:, None] - pts[None])
    labels = dbscan_labels(dist, eps=0.15, min_samples=3)
    assert labels.tolist() == [0, 0, 0, 0, 1, 1, 1, -1]
    assert dbscan_labels(dist, eps=0.15, min_samples=4).tolist() == [-1] * 8


@pytest.mark.parametrize(
    ("dist", "kwargs", "message"),
    [
        (np.zeros((3, 4)), {}, "square"),
        (np.zeros(3), {}, "square"),
        (np.zeros((0, 0)), {}, "non-empty"),
        (np.full((2, 2), np.nan), {}, "NaN"),
        (-np.ones((2, 2)), {}, "non-negative"),
        (np.zeros((2, 2)), {"eps": 0.0}, "eps must be a number > 0"),
        (np.zeros((2, 2)), {"min_samples": 0}, "min_samples must be an integer >= 1"),
        (np.zeros((2, 2)), {"min_samples": 2.5}, "min_samples must be an integer"),
    ],
)
def test_dbscan_bad_input(dist, kwargs, message):
    with pytest.raises(ValueError, match=message):
        dbscan_labels(dist, **kwargs)


def test_pseudo_labels_renumbers_and_is_immutable():
    pl = PseudoLabels(np.array([5, 5, -1, 9, 2, 9, 9]))
    assert pl.labels.tolist() == [1, 1, -1, 2, 0, 2, 2]
    assert pl.labels.dtype == np.int64
    assert (pl.num_clusters, pl.num_outliers, len(pl)) == (3, 1, 7)
    assert pl.outlier_ratio == pytest.approx(1 / 7)
    assert pl.cluster_sizes().tolist() == [1, 2, 3]
    assert pl.clustered_mask.tolist() == [True, True, False, True, True, True, True]
    assert PseudoLabels([0, 0, 1]) == PseudoLabels(np.array([3, 3, 7]))
    with pytest.raises(ValueError):
        pl.labels[0] = 4
    with pytest.raises(dataclasses.FrozenInstanceError):
        pl.labels = np.zeros(7, dtype=np.int64)


def test_pseudo_labels_all_outliers_and_empty():
    pl = PseudoLabels([-1, -1])
    assert (pl.num_clusters, pl.num_outliers, pl.outlier_ratio) == (0, 2, 1.0)
    assert pl.stats() == {
        "samples": 2,
        "clusters": 0,
        "outliers": 2,
        "outlier_ratio": 1.0,
        "size_min": 0,
        "size_median": 0.0,
        "size_max": 0,
    }
    assert pl.centroids(torch.ones(2, 3)).shape == (0, 3)
    assert PseudoLabels(np.array([], dtype=np.int64)).outlier_ratio == 0.0


@pytest.mark.parametrize(
    ("labels", "message"),
    [([[0, 1]], "1-D"), ([0.5, 1.0], "integers"), ([0, -2], ">= -1")],
)
def test_pseudo_labels_bad_input(labels, message):
    with pytest.raises(ValueError, match=message):
        PseudoLabels(np.array(labels))


def test_centroids_against_loop():
    rng = np.random.default_rng(0)
    labels = rng.integers(-1, 5, size=40)
    feats = torch.from_numpy(rng.normal(size=(40, 6)))
    pl = PseudoLabels(labels)
    got = pl.centroids(feats)
    assert got.shape == (pl.num_clusters, 6) and got.dtype == torch.float64
    for c in range(pl.num_clusters):
        mean = feats[torch.from_numpy(pl.labels == c)].mean(0)
        torch.testing.assert_close(got[c], mean / mean.norm())
    with pytest.raises(ValueError, match="one row per label"):
        pl.centroids(feats[:-1])
    with pytest.raises(ValueError, match="floating point"):
        pl.centroids(torch.ones(40, 6, dtype=torch.int64))


def test_stats():
    stats = PseudoLabels([0, 0, 0, 1, 1, 2, 2, 2, 2, -1]).stats()
    assert stats == {
        "samples": 10,
        "clusters": 3,
        "outliers": 1,
        "outlier_ratio": 0.1,
        "size_min": 2,
        "size_median": 3.0,
        "size_max": 4,
    }


def test_quality_counts_outliers_as_singletons():
    truth = [7, 7, 8, 8, 8, 9]
    pl = PseudoLabels([0, 0, -1, -1, 1, -1])
    q = pl.quality(truth)
    explicit = [0, 0, 2, 3, 1, 4]  # each outlier its own cluster
    assert q["ari"] == pytest.approx(adjusted_rand_score(truth, explicit))
    assert q["nmi"] == pytest.approx(normalized_mutual_info_score(truth, explicit))
    assert q["ari"] < 1.0
    assert q["ari_clustered"] == pytest.approx(1.0)
    assert q["nmi_clustered"] == pytest.approx(1.0)
    assert q["clustered_fraction"] == pytest.approx(0.5)
    perfect = PseudoLabels([0, 0, 1, 1, 1, 2]).quality(truth)
    assert perfect["ari"] == pytest.approx(1.0) and perfect["nmi"] == pytest.approx(1.0)
    assert np.isnan(PseudoLabels([-1, -1]).quality([1, 2])["ari_clustered"])
    with pytest.raises(ValueError, match="one id per sample"):
        pl.quality([1, 2])


def test_cluster_features_recovers_separated_identities():
    rng = np.random.default_rng(0)
    ids = np.repeat(np.arange(6), 15)
    centres = rng.normal(size=(6, 32))
    x = centres[ids] + 0.15 * rng.normal(size=(90, 32))
    x = torch.from_numpy(x / np.linalg.norm(x, axis=1, keepdims=True)).float()
    pl = cluster_features(x, k1=10, k2=3, eps=0.6, min_samples=4)
    assert isinstance(pl, PseudoLabels)
    assert pl.num_clusters == 6 and pl.num_outliers == 0
    assert pl.quality(ids)["ari"] == pytest.approx(1.0)
    cc = cluster_features(x, k1=10, k2=3, jaccard_variant="cluster_contrast")
    assert cc.quality(ids)["ari"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="k1 must be smaller"):
        cluster_features(x, k1=90)
    with pytest.raises(ValueError, match="L2-normalised"):
        cluster_features(x * 2, k1=10)
