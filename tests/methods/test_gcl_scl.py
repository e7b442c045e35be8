"""GCL + SCL: Eq. 8 on the selected instances, the GCL module's training, CR / NS switches."""

from __future__ import annotations

import pytest
import torch

from unreid.losses import cluster_nce

D = 8


def test_gcl_scl_loss_is_eq8_on_the_selected_instances(setup_method, batch_of):
    from unreid.losses import selective_nce

    cfg, m, feats, labels = setup_method("gcl_scl", "gcl_scl.k=1")
    batch = batch_of(feats[[0, 1, 2, 3, 4, 5]], [0, 0, 0, 1, 1, 1])
    losses = m.losses(batch)
    x, y = batch.features, batch.targets
    torch.testing.assert_close(losses["scl"], selective_nce(x, y, m.memory.bank, 1, 0.05))
    m.gcl.train()
    x_hat = batch.extras["x_hat"]
    assert x_hat.shape == (6, 2 * D)
    want = 0.5 * selective_nce(x_hat, y, m.refined_memory.bank, 1, 0.05)
    torch.testing.assert_close(losses["scl_refined"], want)


def test_gcl_scl_trains_its_gcl_module_and_updates_both_memories(setup_method, batch_of):
    cfg, m, feats, labels = setup_method("gcl_scl")
    assert m.refined_memory.bank.shape == (3, 2 * D)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    opt = torch.optim.SGD(m.parameters(), lr=0.5)
    batch = batch_of(feats[[0, 1, 2, 3, 4, 5]], [0, 0, 0, 1, 1, 1])
    sum(m.losses(batch).values()).backward()
    opt.step()
    m.update_memories(batch)
    after = m.state_dict()
    assert not torch.equal(before["gcl.theta.0.weight"], after["gcl.theta.0.weight"])
    assert not torch.equal(before["gcl.phi.0.weight"], after["gcl.phi.0.weight"])
    assert not torch.equal(before["memory.bank"], after["memory.bank"])
    assert not torch.equal(before["refined_memory.bank"], after["refined_memory.bank"])
    torch.testing.assert_close(after["memory.bank"][2], before["memory.bank"][2])


def test_gcl_scl_clustering_features_and_switches(setup_method, batch_of):
    from unreid.data.samples import Sample

    samples = [Sample(f"/d/{i:04d}_c1s1_{i:06d}_00.jpg", 0, i) for i in range(12)]
    _, m, feats, labels = setup_method("gcl_scl")
    refined = m.clustering_features(1, feats, samples)
    assert refined.shape == (12, 2 * D)
    torch.testing.assert_close(refined.norm(dim=1), torch.ones(12))
    _, no_cr, _, _ = setup_method("gcl_scl", "gcl_scl.cr=false")
    assert no_cr.clustering_features(1, feats, samples) is feats  # NS only: raw clustering
    _, off, _, _ = setup_method("gcl_scl", "gcl_scl.cr=false", "gcl_scl.ns=false")
    assert off.gcl is None and off.refined_memory is None
    batch = batch_of(feats[[0, 1, 3, 4]], [0, 0, 1, 1])
    assert set(off.losses(batch)) == {"scl"}
    with pytest.raises(ValueError, match=r"gcl_scl\.cr=True: needs gcl_scl\.ns"):
        setup_method("gcl_scl", "gcl_scl.ns=false")
    for bad in ("gcl_scl.update=hardest", "gcl_scl.order=pid", "gcl_scl.loss=some"):
        with pytest.raises(ValueError, match="gcl_scl"):
            setup_method("gcl_scl", bad)


def test_gcl_scl_loss_all_uses_every_instance(setup_method, batch_of):
    cfg, m, feats, labels = setup_method(
        "gcl_scl", "gcl_scl.loss=all", "gcl_scl.ns=false", "gcl_scl.cr=false"
    )
    batch = batch_of(feats[[0, 1, 2, 3, 4, 5]], [0, 0, 0, 1, 1, 1])
    got = m.losses(batch)["scl"]
    torch.testing.assert_close(got, cluster_nce(batch.features, batch.targets, m.memory.bank, 0.05))


def test_gcl_scl_cr_warm_up_clusters_raw_features_until_its_epoch(setup_method):
    from unreid.data.samples import Sample

    samples = [Sample(f"/d/{i:04d}_c1s1_{i:06d}_00.jpg", 0, i) for i in range(12)]
    cfg, m, feats, labels = setup_method("gcl_scl", "gcl_scl.cr_start_epoch=2")
    assert m.clustering_features(1, feats, samples) is feats  # warm-up: raw features
    m.start_epoch(1, feats, labels, torch.zeros(12, dtype=torch.long))
    assert m.refined_memory.bank.shape == (3, 2 * D)  # the x^ memory is built all the same
    assert m.clustering_features(2, feats, samples).shape == (12, 2 * D)
    off, *_ = setup_method("gcl_scl", "gcl_scl.cr=false")
    assert off.method_cfg.ignored()["cr_start_epoch"] == "gcl_scl.cr=false"
    with pytest.raises(ValueError, match="cr_start_epoch"):
        setup_method("gcl_scl", "gcl_scl.cr_start_epoch=-1")
