"""GCL + SCL: Eq. 8, the GCL module's training, CR / NS switches, and x^ / Eq. 6-8 oracles."""

from __future__ import annotations

import math

import oracle_math as om
import pytest
import torch
import torch.nn.functional as F

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


# ---- independent oracle of the x^ path (issue 31, item 2) -------------------------------
# The paper's and the config's settings, written out so a changed default fails the oracle:
# T = 5 (Eq. 2), eta = 0.2 (implementation details), tau = 0.05, k = 2 (Table 3), lam = 0.5.
GCL_T, ETA, TAU, K, LAM = 5.0, 0.2, 0.05, 2, 0.5


def _batch_norm(z: list[om.Vec], bn: torch.nn.BatchNorm1d, train: bool) -> list[om.Vec]:
    """BN per channel: batch mean and biased variance in train mode, running ones in eval."""
    out = [[0.0] * len(z[0]) for _ in z]
    w, b = om.vec(bn.weight), om.vec(bn.bias)
    for d in range(len(z[0])):
        col = [r[d] for r in z]
        if train:
            mu = sum(col) / len(col)
            var = sum((c - mu) ** 2 for c in col) / len(col)
        else:
            mu, var = float(bn.running_mean[d]), float(bn.running_var[d])
        for i, c in enumerate(col):
            out[i][d] = (c - mu) / math.sqrt(var + bn.eps) * w[d] + b[d]
    return out


def _embed(v: list[om.Vec], branch: torch.nn.Sequential, train: bool) -> list[om.Vec]:
    """theta(v) = Norm(BN(W v)) (Eq. 1; Eq. 5's delta / zeta share W_theta / W_phi)."""
    w = om.rows(branch[0].weight)
    return [om.unit(r) for r in _batch_norm([om.linear(w, x) for x in v], branch[1], train)]


def _relation_aware(v: list[om.Vec], gcl, train: bool) -> list[om.Vec]:
    """x^_i = [x_i, sum_j m_ij x_j] with m_ij = softmax_j(T * theta(x_i)^T phi(x_j)), Eq. 1-4.

    The concatenation is made unit length as a whole (`concat_norm="joint"`, the
    default; the paper does not say how x^ enters the cosine loss).
    """
    a, b = _embed(v, gcl.theta, train), _embed(v, gcl.phi, train)
    out = []
    for i, x in enumerate(v):
        m = om.softmax([GCL_T * om.dot(a[i], b[j]) for j in range(len(v))])
        tilde = [sum(m[j] * v[j][d] for j in range(len(v))) for d in range(len(x))]
        out.append(om.unit(x + tilde))
    return out


def _scl_selection(q: list[om.Vec], targets: list[int], bank: list[om.Vec]) -> list[int]:
    """Per cluster, its k instances least similar to the row (Eq. 6), hardest first."""
    sims = [om.dot(om.unit(x), bank[y]) for x, y in zip(q, targets, strict=True)]
    return [p for pos in om.members(targets).values() for p in om.least_similar(sims, pos, K)]


def _scl_loss(q: list[om.Vec], targets: list[int], bank: list[om.Vec]) -> float:
    """Eq. 7 over the selected instances; the mean of their terms (the code's stated choice)."""
    chosen = _scl_selection(q, targets, bank)
    return om.contrast([q[p] for p in chosen], [targets[p] for p in chosen], bank, TAU)


def _scl_update(q: list[om.Vec], targets: list[int], bank: list[om.Vec]) -> None:
    """Eq. 6 in place: the selected instances move their row one after the other."""
    for p in _scl_selection(q, targets, bank):  # ranked once, against the rows before
        bank[targets[p]] = om.momentum_step(bank[targets[p]], om.unit(q[p]), ETA)


def _randomise_gcl(gcl, seed: int) -> None:
    """Non-trivial BN affine and running statistics, so train / eval BN cannot be confused."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for branch in (gcl.theta, gcl.phi):
            branch[0].weight.copy_(torch.randn(branch[0].weight.shape, generator=g))
            bn = branch[1]
            bn.weight.copy_(1 + 0.3 * torch.randn(D, generator=g))
            bn.bias.copy_(0.3 * torch.randn(D, generator=g))
            bn.running_mean.copy_(0.2 * torch.randn(D, generator=g))
            bn.running_var.copy_(0.5 + torch.rand(D, generator=g))


def test_gcl_scl_x_hat_memory_matches_cr_from_the_definition(setup_method):
    """Oracle for the x^ memory at epoch start: unit means of eval-mode x^ (Eq. 1-4).

    Without `clustering_features` the CR graphs follow the dataset order; 12
    images with B = 16 are one graph of 12, embedded with BN running statistics.
    """
    _, m, feats, labels = setup_method("gcl_scl")
    _randomise_gcl(m.gcl, seed=1)
    m.start_epoch(0, feats, labels, torch.zeros(12, dtype=torch.long))
    v_hat = _relation_aware(om.rows(feats), m.gcl, train=False)
    om.close(m.refined_memory.bank, om.cluster_means(v_hat, list(labels.labels)))
    om.close(m.memory.bank, om.cluster_means(om.rows(feats), list(labels.labels)))


def test_gcl_scl_x_hat_and_eq8_match_a_brute_force(setup_method, batch_of):
    """Oracle for NS: x^ of the batch graph (Eq. 5 with Eq. 2-4), Eq. 8's loss, Eq. 6's update.

    The P x K batch is one graph in train mode (BN on the batch statistics);
    x^ is rebuilt per node from the module's weights without calling it. The
    loss is L_scl(x) + 0.5 L_scl(x^) (Eq. 7-8), each over the k = 2 instances of
    every cluster least similar to its own memory's row; after the step both
    memories take those instances, hardest first, with eta = 0.2 (Eq. 6). The
    batch is interleaved and one cluster has a single instance.
    """
    _, m, feats, labels = setup_method("gcl_scl")
    _randomise_gcl(m.gcl, seed=2)
    m.start_epoch(0, feats, labels, torch.zeros(12, dtype=torch.long))
    raw_bank, hat_bank = om.rows(m.memory.bank), om.rows(m.refined_memory.bank)
    index, targets = [0, 3, 1, 10, 2, 4, 11, 6], [0, 1, 0, 1, 0, 1, 0, 2]
    g = torch.Generator().manual_seed(3)
    x = F.normalize(feats[index] + 0.3 * torch.randn(len(index), D, generator=g), dim=1)
    batch = batch_of(x, targets)
    m.gcl.train()
    losses = m.losses(batch)
    xs = om.rows(x)
    x_hat = _relation_aware(xs, m.gcl, train=True)
    om.close(batch.extras["x_hat"], x_hat)
    om.close(losses["scl"], _scl_loss(xs, targets, raw_bank))
    om.close(losses["scl_refined"], LAM * _scl_loss(x_hat, targets, hat_bank))
    m.update_memories(batch)
    _scl_update(xs, targets, raw_bank)
    _scl_update(x_hat, targets, hat_bank)
    om.close(m.memory.bank, raw_bank)
    om.close(m.refined_memory.bank, hat_bank)
