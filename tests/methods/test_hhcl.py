"""HHCL: the paper form (Eq. 2) and the released form's memories and weights."""

from __future__ import annotations

import pytest
import torch

from unreid.losses import cluster_nce, hard_instance_nce

D = 8


@pytest.mark.parametrize("mu", [0.0, 0.25, 0.5, 1.0])
def test_hhcl_paper_loss_is_eq2(mu, setup_method, batch_of):
    cfg, m, feats, _ = setup_method("hhcl", f"hhcl.mu={mu}")
    batch = batch_of(feats[[0, 1, 3, 4]], [0, 0, 1, 1])
    got = sum(m.losses(batch).values())
    x, y = batch.features, batch.targets
    l_cls = cluster_nce(x, y, m.centroids.bank, 0.05)
    l_ins = hard_instance_nce(x, y, m.instances.bank, 0.05)
    torch.testing.assert_close(got, mu * l_cls + (1 - mu) * l_ins)


def test_hhcl_released_form_weights_and_memories(setup_method, batch_of):
    cfg, m, feats, labels = setup_method("hhcl", "hhcl.form=released")
    assert m.instances is None and m.hard_centroids is not None
    centroids = labels.centroids(feats)
    torch.testing.assert_close(m.hard_centroids.bank, centroids)
    torch.testing.assert_close(m.centroids.bank, centroids)
    batch = batch_of(feats[[0, 1, 3, 4]], [0, 0, 1, 1])
    got = sum(m.losses(batch).values())
    x, y = batch.features, batch.targets
    want = 0.5 * cluster_nce(x, y, centroids, 0.05) + 0.25 * cluster_nce(x, y, centroids, 0.05)
    torch.testing.assert_close(got, want)


def test_hhcl_rejects_bad_settings(setup_method):
    for bad in ("hhcl.mu=1.5", "hhcl.form=v2", "hhcl.instance_temperature=0"):
        with pytest.raises(ValueError, match="hhcl"):
            setup_method("hhcl", bad)
