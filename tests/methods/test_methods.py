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
    source = ["data.source=market1501"] if method == "spcl_uda" else []
    cfg = load_config(
        None,
        [f"method={method}", "train.num_instances=2", "train.batch_size=4", *source, *overrides],
    )
    g = torch.Generator().manual_seed(0)
    feats = F.normalize(torch.randn(12, D, generator=g), dim=1)
    labels = PseudoLabels(torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, -1, 1, 0]).numpy())
    m = build_method(cfg, D)
    if m.wants_source_features(0):  # domain adaptation: the same 12 rows as a 4-class source
        m.start_source(feats, torch.arange(12) % 4)
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


def test_gcl_scl_loss_is_eq8_on_the_selected_instances():
    from unreid.losses import selective_nce

    cfg, m, feats, labels = setup("gcl_scl", "gcl_scl.k=1")
    batch = batch_of(feats[[0, 1, 2, 3, 4, 5]], [0, 0, 0, 1, 1, 1])
    losses = m.losses(batch)
    x, y = batch.features, batch.targets
    torch.testing.assert_close(losses["scl"], selective_nce(x, y, m.memory.bank, 1, 0.05))
    m.gcl.train()
    x_hat = batch.extras["x_hat"]
    assert x_hat.shape == (6, 2 * D)
    want = 0.5 * selective_nce(x_hat, y, m.refined_memory.bank, 1, 0.05)
    torch.testing.assert_close(losses["scl_refined"], want)


def test_gcl_scl_trains_its_gcl_module_and_updates_both_memories():
    cfg, m, feats, labels = setup("gcl_scl")
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


def test_gcl_scl_clustering_features_and_switches():
    from unreid.data.samples import Sample

    samples = [Sample(f"/d/{i:04d}_c1s1_{i:06d}_00.jpg", 0, i) for i in range(12)]
    _, m, feats, labels = setup("gcl_scl")
    refined = m.clustering_features(1, feats, samples)
    assert refined.shape == (12, 2 * D)
    torch.testing.assert_close(refined.norm(dim=1), torch.ones(12))
    _, no_cr, _, _ = setup("gcl_scl", "gcl_scl.cr=false")
    assert no_cr.clustering_features(1, feats, samples) is feats  # NS only: raw clustering
    _, off, _, _ = setup("gcl_scl", "gcl_scl.cr=false", "gcl_scl.ns=false")
    assert off.gcl is None and off.refined_memory is None
    batch = batch_of(feats[[0, 1, 3, 4]], [0, 0, 1, 1])
    assert set(off.losses(batch)) == {"scl"}
    with pytest.raises(ValueError, match=r"gcl_scl\.cr needs gcl_scl\.ns"):
        setup("gcl_scl", "gcl_scl.ns=false")
    for bad in ("gcl_scl.update=hardest", "gcl_scl.order=pid", "gcl_scl.loss=some"):
        with pytest.raises(ValueError, match="gcl_scl"):
            setup("gcl_scl", bad)


def test_gcl_scl_loss_all_uses_every_instance():
    cfg, m, feats, labels = setup(
        "gcl_scl", "gcl_scl.loss=all", "gcl_scl.ns=false", "gcl_scl.cr=false"
    )
    batch = batch_of(feats[[0, 1, 2, 3, 4, 5]], [0, 0, 0, 1, 1, 1])
    got = m.losses(batch)["scl"]
    torch.testing.assert_close(got, cluster_nce(batch.features, batch.targets, m.memory.bank, 0.05))


def test_csa_hps_initialises_prototypes_by_attention_or_mean():
    cfg, m, feats, labels = setup("csa_hps")
    ids = torch.as_tensor(labels.labels.copy())
    m.saa.eval()
    protos, _ = m.saa.aggregate_clusters(feats, ids, labels.num_clusters)
    torch.testing.assert_close(m.memory.bank, protos)
    _, mean, _, _ = setup("csa_hps", "csa_hps.init=mean")
    torch.testing.assert_close(mean.memory.bank, labels.centroids(feats))
    assert mean.saa is not None  # HPS still needs the module
    _, plain, _, _ = setup("csa_hps", "csa_hps.init=mean", "csa_hps.update=mean")
    assert plain.saa is None


def test_csa_hps_updates_with_the_most_dispersed_instance():
    g = torch.Generator().manual_seed(7)
    centre = F.normalize(torch.randn(D, generator=g), dim=0)
    tight = F.normalize(centre + 0.05 * torch.randn(3, D, generator=g), dim=1)
    stray = F.normalize(torch.randn(1, D, generator=g), dim=1)
    x = torch.cat([tight[:2], stray, tight[2:]])
    cfg, m, feats, labels = setup("csa_hps", "csa_hps.heads=1")
    batch = batch_of(x, [0, 0, 0, 0])
    m.losses(batch)
    assert int(torch.argmax(batch.extras["dispersion"])) == 2
    old = m.memory.bank.clone()
    m.update_memories(batch)
    torch.testing.assert_close(m.memory.bank[0], F.normalize(0.1 * old[0] + 0.9 * stray[0], dim=0))
    torch.testing.assert_close(m.memory.bank[1:], old[1:])


def test_csa_hps_loss_and_training_step():
    cfg, m, feats, labels = setup("csa_hps", "csa_hps.aggregation_weight=0.5", "csa_hps.heads=2")
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


def test_csa_hps_rejects_bad_settings():
    for bad in ("csa_hps.init=median", "csa_hps.update=best", "csa_hps.heads=3"):
        with pytest.raises(ValueError, match="csa_hps"):
            setup("csa_hps", bad)
