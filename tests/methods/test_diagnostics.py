"""Diagnostics: attention agreement, impure members and the dispersion AUC against brute force."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from unreid.methods.diagnostics import (
    attention_diagnostics,
    dispersion_diagnostics,
    impure_members,
)


def test_attention_agreement_counts_by_the_definition():
    rng = np.random.default_rng(0)
    n = 40
    labels = rng.integers(-1, 4, n)
    truth = rng.integers(0, 5, n)
    top = rng.integers(-1, n, n)
    entropy = rng.random(n)
    got = attention_diagnostics(entropy, top, labels, truth)
    pairs = [(i, int(top[i])) for i in range(n) if top[i] >= 0]
    clustered = [(i, j) for i, j in pairs if labels[i] >= 0 and labels[j] >= 0]
    assert got["attention_entropy"] == pytest.approx(sum(entropy) / n)
    want_pseudo = sum(labels[i] == labels[j] for i, j in clustered) / len(clustered)
    assert got["top_same_pseudo"] == pytest.approx(want_pseudo)
    assert got["top_same_identity"] == pytest.approx(
        sum(truth[i] == truth[j] for i, j in pairs) / len(pairs)
    )
    assert "top_same_identity" not in attention_diagnostics(entropy, top, labels, None)


def test_impure_members_are_those_outside_the_majority_identity():
    labels = np.array([0, 0, 0, 1, 1, -1, 2, 2, 2, 2])
    truth = np.array([5, 5, 6, 7, 8, 9, 3, 3, 4, 4])
    # cluster 0: majority 5; cluster 1: tie 7/8 -> 7 (smallest id); cluster 2: tie 3/4 -> 3
    want = [False, False, True, False, True, False, False, False, True, True]
    assert impure_members(labels, truth).tolist() == want


def test_dispersion_auc_is_the_pairwise_probability():
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(5), 6)
    labels[[3, 17]] = -1
    truth = labels.copy()
    truth[[1, 8, 9, 20, 26]] += 10  # five wrongly clustered images
    truth[labels < 0] = 99
    dispersion = rng.random(labels.size)
    got = dispersion_diagnostics(dispersion, labels, truth)
    bad = impure_members(labels, truth)
    pos = [dispersion[i] for i in range(labels.size) if labels[i] >= 0 and bad[i]]
    neg = [dispersion[i] for i in range(labels.size) if labels[i] >= 0 and not bad[i]]
    wins = sum((p > q) + 0.5 * (p == q) for p, q in itertools.product(pos, neg))
    assert got["dispersion_outlier_auc"] == pytest.approx(wins / (len(pos) * len(neg)))
    assert got["impure_fraction"] == pytest.approx(len(pos) / (len(pos) + len(neg)))
    kept = pos + neg
    mean = sum(kept) / len(kept)
    spread = math.sqrt(sum((d - mean) ** 2 for d in kept) / len(kept))
    assert got["dispersion_std"] == pytest.approx(spread)
    pure = dispersion_diagnostics(dispersion, labels, labels)  # nothing impure: no AUC
    assert math.isnan(pure["dispersion_outlier_auc"]) and pure["impure_fraction"] == 0


def test_mismatched_arrays_are_refused_with_their_shapes():
    with pytest.raises(ValueError, match=r"entropy \(3,\), top \(2,\)"):
        attention_diagnostics(np.zeros(3), np.zeros(2, dtype=int), np.zeros(3, dtype=int), None)
    with pytest.raises(ValueError, match="true_ids"):
        dispersion_diagnostics(np.zeros(3), np.zeros(3, dtype=int), np.zeros(4, dtype=int))


def test_gcl_knn_graphs_are_each_images_nearest_neighbours(setup_method):
    from unreid.data.samples import Sample
    from unreid.neighbours import ranked_neighbours

    samples = [Sample(f"/d/{i:04d}_c1s1_{i:06d}_00.jpg", 0, i) for i in range(12)]
    cfg, m, feats, labels = setup_method("gcl_scl", "gcl_scl.graph=knn", "gcl_scl.graph_size=4")
    assert cfg.method_cfg.ignored()["order"] == "gcl_scl.graph=knn"
    got = m.clustering_features(1, feats, samples)
    want = m.gcl.refine_neighbours(feats, torch.from_numpy(ranked_neighbours(feats.numpy(), 4)))
    torch.testing.assert_close(got, want.features)
    m.start_epoch(1, feats, labels, torch.zeros(12, dtype=torch.long))
    truth = np.arange(12) // 3
    diag = m.diagnostics(truth)
    assert diag["memory_start_cosine"] == pytest.approx(1.0)  # no update yet
    assert {"attention_entropy", "top_same_pseudo", "top_same_identity"} <= set(diag)
    assert 0 < diag["attention_entropy"] < math.log(4) + 1e-6
    assert "attention_entropy" not in m.diagnostics(truth)  # reported once per epoch


def test_csa_reports_the_dispersion_of_its_epoch_start_clusters(setup_method, batch_of):
    cfg, m, feats, labels = setup_method("csa_hps", "csa_hps.heads=2")
    truth = np.array([0, 0, 1, 1, 1, 1, 2, 2, 2, 3, 1, 0])
    with torch.no_grad():  # what start_epoch computed, before any step
        _, dispersion = m.saa.eval().aggregate_clusters(feats, torch.tensor(labels.labels), 3)
    m.saa.train()
    want = dispersion_diagnostics(dispersion.numpy(), labels.labels, truth)
    batch = batch_of(feats[[0, 1, 3, 4]], [0, 0, 1, 1])
    m.losses(batch)
    m.update_memories(batch)
    diag = m.diagnostics(truth)
    for key, value in want.items():
        assert diag[key] == pytest.approx(value)
    assert diag["memory_start_cosine"] < 1.0  # rows 0 and 1 moved
