"""Cluster Contrast: ClusterNCE against the cluster means, updated after the step by its policy."""

from __future__ import annotations

import pytest
import torch

from unreid.errors import ConfigError
from unreid.losses import cluster_nce
from unreid.memory import HardClusterMemory, MomentumClusterMemory
from unreid.methods.cluster_contrast import ClusterContrast, ClusterMemoryConfig


def test_memory_starts_at_the_cluster_means_and_the_loss_is_cluster_nce(setup_method, batch_of):
    _, m, feats, labels = setup_method("cluster_contrast", "cluster_contrast.label_smoothing=0.1")
    torch.testing.assert_close(m.memory.bank, labels.centroids(feats))
    batch = batch_of(feats[[0, 1, 3, 4]], [0, 0, 1, 1])
    want = cluster_nce(batch.features, batch.targets, labels.centroids(feats), 0.05, 0.1)
    torch.testing.assert_close(m.losses(batch)["cluster_nce"], want)


@pytest.mark.parametrize(
    ("policy", "cls"), [("momentum", MomentumClusterMemory), ("hard", HardClusterMemory)]
)
def test_update_policy_picks_the_memory_class(policy, cls):
    m = ClusterContrast(ClusterMemoryConfig(memory_update=policy, momentum=0.3), 4)
    assert type(m.memory) is cls and m.memory.momentum == 0.3


def test_update_moves_only_the_batch_clusters_after_the_step(setup_method, batch_of):
    _, m, feats, _ = setup_method("cluster_contrast")
    old = m.memory.bank.clone()
    batch = batch_of(feats[[0, 1]], [0, 0])
    batch.features = batch.features.detach()
    m.update_memories(batch)
    # momentum 0.1, instances in batch order, renormalised after each
    row = old[0]
    for x in feats[[0, 1]]:
        row = torch.nn.functional.normalize(0.1 * row + 0.9 * x, dim=0)
    torch.testing.assert_close(m.memory.bank[0], row)
    torch.testing.assert_close(m.memory.bank[1:], old[1:])


@pytest.mark.parametrize(
    "bad",
    [
        {"memory_update": "mean_of_all"},
        {"momentum": 1.0},
        {"temperature": 0.0},
        {"label_smoothing": 2.0},
    ],
)
def test_config_rejects_bad_values(bad):
    with pytest.raises(ConfigError, match=next(iter(bad))):
        ClusterMemoryConfig(**bad)
