"""CSA + HPS: attention prototypes, the most dispersed instance's update, SAA's training."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from unreid.losses import cluster_nce

D = 8


def test_csa_hps_initialises_prototypes_by_attention_or_mean(setup_method):
    cfg, m, feats, labels = setup_method("csa_hps")
    ids = torch.as_tensor(labels.labels.copy())
    m.saa.eval()
    protos, _ = m.saa.aggregate_clusters(feats, ids, labels.num_clusters)
    torch.testing.assert_close(m.memory.bank, protos)
    _, mean, _, _ = setup_method("csa_hps", "csa_hps.init=mean")
    torch.testing.assert_close(mean.memory.bank, labels.centroids(feats))
    assert mean.saa is not None  # HPS still needs the module
    _, plain, _, _ = setup_method("csa_hps", "csa_hps.init=mean", "csa_hps.update=mean")
    assert plain.saa is None


def test_csa_hps_updates_with_the_most_dispersed_instance(setup_method, batch_of):
    g = torch.Generator().manual_seed(7)
    centre = F.normalize(torch.randn(D, generator=g), dim=0)
    tight = F.normalize(centre + 0.05 * torch.randn(3, D, generator=g), dim=1)
    stray = F.normalize(torch.randn(1, D, generator=g), dim=1)
    x = torch.cat([tight[:2], stray, tight[2:]])
    cfg, m, feats, labels = setup_method("csa_hps", "csa_hps.heads=1")
    batch = batch_of(x, [0, 0, 0, 0])
    m.losses(batch)
    assert int(torch.argmax(batch.extras["dispersion"])) == 2
    old = m.memory.bank.clone()
    m.update_memories(batch)
    torch.testing.assert_close(m.memory.bank[0], F.normalize(0.1 * old[0] + 0.9 * stray[0], dim=0))
    torch.testing.assert_close(m.memory.bank[1:], old[1:])


def test_csa_hps_loss_and_training_step(setup_method, batch_of):
    cfg, m, feats, labels = setup_method(
        "csa_hps", "csa_hps.aggregation_weight=0.5", "csa_hps.heads=2"
    )
    batch = batch_of(feats[[0, 1, 2, 3, 4, 5]], [0, 0, 0, 1, 1, 1])
    losses = m.losses(batch)
    x, y = batch.features, batch.targets
    torch.testing.assert_close(losses["cluster_nce"], cluster_nce(x, y, m.memory.bank, 0.05))
    protos = torch.stack([m.saa.aggregate(x[y == c][None])[0][0] for c in (0, 1)])
    want = 0.5 * cluster_nce(protos, torch.tensor([0, 1]), m.memory.bank, 0.05)
    torch.testing.assert_close(losses["aggregation_nce"], want)
    before = m.saa.query.detach().clone()
    opt = torch.optim.SGD(m.parameters(), lr=1.0)
    sum(losses.values()).backward()
    opt.step()
    assert not torch.equal(before, m.saa.query)  # the aggregation loss trains SAA


def test_csa_hps_rejects_bad_settings(setup_method):
    for bad in ("csa_hps.init=median", "csa_hps.update=best", "csa_hps.heads=3"):
        with pytest.raises(ValueError, match="csa_hps"):
            setup_method("csa_hps", bad)


def test_csa_hps_warm_up_keeps_saa_out_of_the_memory_until_its_epoch(setup_method, batch_of):
    # setup_method starts epoch 0: in the warm-up, mean prototypes and the hard update
    cfg, m, feats, labels = setup_method("csa_hps", "csa_hps.saa_start_epoch=2", "csa_hps.heads=2")
    torch.testing.assert_close(m.memory.bank, labels.centroids(feats))
    batch = batch_of(feats[[0, 1, 11, 3]], [0, 0, 0, 1])
    losses = m.losses(batch)
    assert "aggregation_nce" in losses  # SAA trains during the warm-up
    old = m.memory.bank.clone()
    m.update_memories(batch)
    members = feats[[0, 1, 11]]
    hardest = members[torch.argmin(members @ old[0])]  # least similar to the row
    torch.testing.assert_close(m.memory.bank[0], F.normalize(0.1 * old[0] + 0.9 * hardest, dim=0))
    m.start_epoch(2, feats, labels, torch.zeros(12, dtype=torch.long))  # warm-up over
    m.saa.eval()
    with torch.no_grad():
        protos, _ = m.saa.aggregate_clusters(feats, torch.as_tensor(labels.labels.copy()), 3)
    torch.testing.assert_close(m.memory.bank, protos)
    with pytest.raises(ValueError, match="saa_start_epoch"):
        setup_method("csa_hps", "csa_hps.saa_start_epoch=-1")
