"""CSA + HPS: attention prototypes (with a per-head brute force), HPS's update, SAA's training."""

from __future__ import annotations

import oracle_math as om
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


# ---- independent oracle of the multi-head prototypes (issue 31, item 2) -----------------
# The paper is an abstract only (no equations): the definition checked is the one written
# in `models/set_attention.py`'s docstring. Settings written out: t = 0.1, tau = 0.05,
# momentum 0.1 (Cluster Contrast's), aggregation weight 1.
ATT_T, TAU, MOMENTUM = 0.1, 0.05, 0.1


def _received(xs: list[om.Vec], query: list[om.Vec], key: list[om.Vec], lo: int) -> om.Vec:
    """One head's received attention w[j] = mean_i A[i, j] over the n members.

    q_i = unit(x_i[lo:lo+d] Q), k_j = unit(x_j[lo:lo+d] K); row i is the softmax
    over the other members j != i of cos(q_i, k_j) / t (a member of a cluster
    of one attends to itself).
    """
    d, n = len(query), len(xs)
    q = [om.unit(om.matvec_right(x[lo : lo + d], query)) for x in xs]
    k = [om.unit(om.matvec_right(x[lo : lo + d], key)) for x in xs]
    w = [0.0] * n
    for i in range(n):
        others = [j for j in range(n) if j != i] or [i]
        att = om.softmax([om.dot(q[i], k[j]) / ATT_T for j in others])
        for a, j in zip(att, others, strict=True):
            w[j] += a / n
    return w


def _aggregate(xs: list[om.Vec], saa) -> tuple[om.Vec, om.Vec]:
    """(unit prototype, dispersion per member) of one cluster, head by head.

    Head h's slice of the prototype is sum_j w_h[j] x_j[slice h]; the prototype
    is their concatenation, made unit; dispersion_j = 1 - n * mean_h w_h[j].
    """
    heads, d, n = saa.heads, saa.head_dim, len(xs)
    proto, mean_w = [], [0.0] * n
    for h in range(heads):
        w = _received(xs, om.rows(saa.query[h]), om.rows(saa.key[h]), h * d)
        proto += [sum(w[j] * xs[j][h * d + e] for j in range(n)) for e in range(d)]
        mean_w = [s + wj / heads for s, wj in zip(mean_w, w, strict=True)]
    return om.unit(proto), [1.0 - n * s for s in mean_w]


def _randomise_saa(saa, seed: int) -> None:
    """Query and key maps away from their identity start, different per head."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        saa.query.copy_(torch.randn(saa.query.shape, generator=g))
        saa.key.copy_(torch.randn(saa.key.shape, generator=g))


@pytest.mark.parametrize("heads", [1, 2, 4])
def test_csa_prototypes_match_a_per_head_brute_force(setup_method, heads):
    """Oracle for CSA's initialisation: each memory row is its cluster's SAA prototype.

    Clusters of 4, 4 and 3 members plus an outlier (left out), module weights
    random per head; the prototypes are rebuilt per head, per cluster, member
    by member (`_aggregate`), never through the module's forward.
    """
    _, m, feats, labels = setup_method("csa_hps", f"csa_hps.heads={heads}")
    _randomise_saa(m.saa, seed=heads)
    m.start_epoch(0, feats, labels, torch.zeros(12, dtype=torch.long))
    xs = om.rows(feats)
    ids = list(labels.labels)
    want = [
        _aggregate([x for x, y in zip(xs, ids, strict=True) if y == c], m.saa)[0] for c in range(3)
    ]
    om.close(m.memory.bank, want)


def test_csa_hps_batch_prototypes_dispersion_and_update_match_a_brute_force(setup_method, batch_of):
    """Oracle for a training step: batch-group prototypes, their loss, dispersion, HPS update.

    Per cluster group of the batch (members in batch order): prototype and
    dispersion as `_aggregate`; loss = ClusterNCE(x) + 1 * ClusterNCE(group
    prototypes) against the memory at tau = 0.05; after the step the most
    dispersed member of each group (the first on ties) moves the row with
    momentum 0.1. The groups are interleaved and unequal (3, 2, 1 members).
    """
    _, m, feats, labels = setup_method("csa_hps", "csa_hps.heads=2")
    _randomise_saa(m.saa, seed=9)
    m.start_epoch(0, feats, labels, torch.zeros(12, dtype=torch.long))
    bank = om.rows(m.memory.bank)
    index, targets = [0, 3, 1, 6, 4, 11], [0, 1, 0, 2, 1, 0]
    g = torch.Generator().manual_seed(4)
    x = F.normalize(feats[index] + 0.3 * torch.randn(len(index), D, generator=g), dim=1)
    batch = batch_of(x, targets)
    losses = m.losses(batch)
    xs = om.rows(x)
    groups = sorted(om.members(targets).items())
    protos, dispersion = [], [0.0] * len(xs)
    for _, pos in groups:
        proto, disp = _aggregate([xs[p] for p in pos], m.saa)
        protos.append(proto)
        for p, dp in zip(pos, disp, strict=True):
            dispersion[p] = dp
    om.close(batch.extras["dispersion"], dispersion)
    om.close(losses["cluster_nce"], om.contrast(xs, targets, bank, TAU))
    om.close(losses["aggregation_nce"], om.contrast(protos, [c for c, _ in groups], bank, TAU))
    m.update_memories(batch)
    for c, pos in groups:
        hardest = max(pos, key=lambda p: (dispersion[p], -p))
        bank[c] = om.momentum_step(bank[c], xs[hardest], MOMENTUM)
    om.close(m.memory.bank, bank)
