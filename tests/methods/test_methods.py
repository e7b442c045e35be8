"""Every registered method: builds, runs a step, updates its memories; HHCL's loss forms."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from unreid.config import load_config
from unreid.losses import cluster_nce, hard_instance_nce
from unreid.methods import METHODS, Batch, build_method
from unreid.pseudo_labels import PseudoLabels

D = 8


def setup(method: str, *overrides: str):
    cfg = load_config(
        None, [f"method={method}", "train.num_instances=2", "train.batch_size=4", *overrides]
    )
    g = torch.Generator().manual_seed(0)
    feats = F.normalize(torch.randn(12, D, generator=g), dim=1)
    labels = PseudoLabels(torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, -1, 1, 0]).numpy())
    m = build_method(cfg, D)
    m.start_epoch(0, feats, labels, torch.zeros(12, dtype=torch.long))
    return cfg, m, feats, labels


def batch_of(feats, targets):
    x = feats.clone().requires_grad_(True)
    return Batch(
        x,
        torch.tensor(targets),
        torch.zeros(len(targets), dtype=torch.long),
        torch.arange(len(targets)),
    )


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_steps_and_updates(name):
    _, m, feats, _ = setup(name)
    batch = batch_of(feats[[0, 1, 3, 4]], [0, 0, 1, 1])
    losses = m.losses(batch)
    total = sum(losses.values())
    assert torch.isfinite(total) and total.item() > 0
    total.backward()
    assert batch.features.grad is not None and batch.features.grad.abs().sum() > 0
    before = {k: v.clone() for k, v in m.state_dict().items()}
    m.update_memories(Batch(batch.features.detach(), batch.targets, batch.cameras, batch.indexes))
    after = m.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before), "no memory changed"


@pytest.mark.parametrize("mu", [0.0, 0.25, 0.5, 1.0])
def test_hhcl_paper_loss_is_eq2(mu):
    cfg, m, feats, _ = setup("hhcl", f"hhcl.mu={mu}")
    batch = batch_of(feats[[0, 1, 3, 4]], [0, 0, 1, 1])
    got = sum(m.losses(batch).values())
    x, y = batch.features, batch.targets
    l_cls = cluster_nce(x, y, m.centroids.bank, 0.05)
    l_ins = hard_instance_nce(x, y, m.instances.bank, 0.05)
    torch.testing.assert_close(got, mu * l_cls + (1 - mu) * l_ins)


def test_hhcl_released_form_weights_and_memories():
    cfg, m, feats, labels = setup("hhcl", "hhcl.form=released")
    assert m.instances is None and m.hard_centroids is not None
    centroids = labels.centroids(feats)
    torch.testing.assert_close(m.hard_centroids.bank, centroids)
    torch.testing.assert_close(m.centroids.bank, centroids)
    batch = batch_of(feats[[0, 1, 3, 4]], [0, 0, 1, 1])
    got = sum(m.losses(batch).values())
    x, y = batch.features, batch.targets
    want = 0.5 * cluster_nce(x, y, centroids, 0.05) + 0.25 * cluster_nce(x, y, centroids, 0.05)
    torch.testing.assert_close(got, want)


def test_hhcl_rejects_bad_settings():
    for bad in ("hhcl.mu=1.5", "hhcl.form=v2", "hhcl.instance_temperature=0"):
        with pytest.raises(ValueError, match="hhcl"):
            setup("hhcl", bad)
