"""Small sets of one's own crops: k1 scaled to the set (nothing changes at the presets'
sizes), a batch smaller than the BN group normalised as one group, a degenerate clustering
naming every DBSCAN knob, and a folder's missing identities not held out."""

from __future__ import annotations

import numpy as np
import pytest

from unreid.config import load_config
from unreid.engine.loop import degenerate
from unreid.engine.small_sets import fit_to_set
from unreid.engine.training_data import holdout
from unreid.models.bn_groups import check_group_size, fit_group_size
from unreid.pseudo_labels import PseudoLabels


def cluster(*overrides: str):
    return load_config("cluster_contrast/market1501", list(overrides)).cluster


def test_k1_is_scaled_to_a_small_set_only(caplog):
    c = cluster()
    with caplog.at_level("INFO", logger="unreid"):
        small = fit_to_set(c, 40)
    assert (small.k1, small.k2, small.min_samples, small.eps) == (5, 2, 4, c.eps)
    assert "40 training images, fewer than 8 x cluster.k1=30" in caplog.text
    assert fit_to_set(c, 200).k1 == 25
    assert fit_to_set(c, 12).k1 == 3 and fit_to_set(c, 12).min_samples == 2
    for n in (240, 12936):  # the presets' own sizes: the very same settings
        assert fit_to_set(c, n) is c
    tests_budget = cluster("cluster.k1=10", "cluster.k2=3")  # tiny_runs.py on 150+ images
    assert fit_to_set(tests_budget, 150) is tests_budget
    infomap = cluster("cluster.method=infomap")
    assert fit_to_set(infomap, 40) is infomap


def test_a_batch_smaller_than_the_bn_group_is_one_group_and_a_misfit_names_the_fix():
    assert fit_group_size(64, 16) == 0  # the preset's 64 on a batch of 16
    assert fit_group_size(64, 64) == 64 and fit_group_size(64, 256) == 64  # unchanged
    with pytest.raises(
        ValueError,
        match=r"batch of 96 rows.*train\.bn_group_size=0 .*divides 96 \(16, 32, 48, 96\)",
    ):
        check_group_size(64, 96, 16)


def test_one_cluster_names_eps_k1_and_k2_with_values_for_the_set():
    cfg = load_config("cluster_contrast/market1501", ["cluster.k1=5", "cluster.k2=2"])
    message = degenerate(cfg, PseudoLabels(np.zeros(40, dtype=np.int64)))
    assert "one cluster holds 40 of 40 images" in message
    assert "lower cluster.eps (now 0.6), e.g. to 0.45" in message
    assert "cluster.k1 (now 5, e.g. 2; about N/8 = 5" in message and "cluster.k2 (now 2" in message
    outliers = degenerate(cfg, PseudoLabels(np.full(40, -1, dtype=np.int64)))
    assert "raise cluster.eps (now 0.6), e.g. to 0.7" in outliers
    assert "cluster.min_samples (now 4, e.g. 2)" in outliers


def test_unlabelled_images_have_no_identities_to_hold_out(caplog):
    from unreid.data.samples import Sample

    cfg = load_config("demo", ["data.dataset=folder"])
    crops = [Sample(path=f"c{i}.jpg", pid=None, camera=i % 3) for i in range(40)]
    with caplog.at_level("INFO", logger="unreid"):
        assert holdout(cfg, crops) == 0
    assert "data.holdout_ids=10 does not apply" in caplog.text
