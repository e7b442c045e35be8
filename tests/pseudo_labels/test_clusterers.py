"""The clusterer registry: every entry on well separated blobs, and its failures."""

from __future__ import annotations

from importlib.util import find_spec

import numpy as np
import pytest
import torch

from unreid.pseudo_labels import PseudoLabels, list_clusterers, make_pseudo_labels
from unreid.registry import UnknownNameError
from unreid.settings import ClusterConfig

# small enough for 18 points: neighbourhoods of 5, clusters of at least 3
TINY = ClusterConfig(k1=5, k2=2, min_samples=3, infomap_k=5, infomap_min_size=3)


def blobs() -> tuple[torch.Tensor, list[int]]:
    """3 well separated groups of 6 unit vectors in 8-d, interleaved, and their ids."""
    rng = np.random.default_rng(0)
    centres = np.eye(8)[:3]
    ids = [i % 3 for i in range(18)]
    x = centres[ids] + 0.05 * rng.normal(size=(18, 8))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return torch.from_numpy(x.astype(np.float32)), [10 * i + 7 for i in ids]


def test_the_engine_choices_are_registered():
    assert list_clusterers() == ["dbscan", "ground_truth", "infomap"]


@pytest.mark.parametrize("method", list_clusterers())
def test_each_clusterer_finds_the_groups(method):
    if method == "infomap" and find_spec("infomap") is None:
        pytest.skip("infomap not installed")
    features, true_ids = blobs()
    got = make_pseudo_labels(method, features, TINY, seed=0, true_ids=true_ids)
    assert isinstance(got, PseudoLabels) and len(got) == 18
    assert got.num_clusters == 3 and got.num_outliers == 0
    # the same partition as the true identities
    pairs = {(int(a), b) for a, b in zip(got.labels, true_ids, strict=True)}
    assert len(pairs) == 3


def test_clusterers_ignore_true_ids_except_ground_truth():
    features, true_ids = blobs()
    with_ids = make_pseudo_labels("dbscan", features, TINY, seed=0, true_ids=true_ids)
    without = make_pseudo_labels("dbscan", features, TINY, seed=0, true_ids=None)
    assert with_ids == without


def test_ground_truth_ids_are_contiguous():
    features, _ = blobs()
    got = make_pseudo_labels("ground_truth", features[:4], TINY, seed=0, true_ids=[42, 5, 42, 9])
    assert got.labels.tolist() == [2, 0, 2, 1]


def test_unknown_name_lists_the_clusterers():
    features, _ = blobs()
    with pytest.raises(UnknownNameError, match="dbscan, ground_truth, infomap"):
        make_pseudo_labels("kmeans", features, TINY, seed=0, true_ids=None)


@pytest.mark.parametrize("true_ids", [None, [1, None, 2, 1]])
def test_ground_truth_needs_labels(true_ids):
    features, _ = blobs()
    with pytest.raises(ValueError, match="ground_truth"):
        make_pseudo_labels("ground_truth", features[:4], TINY, seed=0, true_ids=true_ids)
