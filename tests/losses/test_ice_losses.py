"""ICE's three losses against brute-force loops written from their definitions."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from unreid.losses import inter_camera_nce
from unreid.losses.ice import ice_hard_instance_nce, ice_proxy_nce, ice_soft_consistency

D = 5


def unit(n: int, seed: int) -> torch.Tensor:
    return F.normalize(
        torch.randn(n, D, generator=torch.Generator().manual_seed(seed)), dim=1
    ).double()


# 3 clusters over 3 cameras: 7 proxies, cluster 2 seen by one camera only
PROXY_CLUSTER = torch.tensor([0, 0, 0, 1, 1, 2, 1])
PROXY_CAMERA = torch.tensor([0, 1, 2, 0, 2, 1, 1])
TARGETS = torch.tensor([0, 0, 1, 1, 2, 2, 0])
CAMERAS = torch.tensor([0, 1, 0, 2, 1, 1, 2])


def brute_proxy(x, targets, cameras, bank, proxy_cluster, tau, k, reduction):
    x = F.normalize(x, dim=1)
    per_sample = []
    for i in range(len(x)):
        s = [float(x[i] @ bank[p]) for p in range(len(bank))]
        pos = [p for p in range(len(bank)) if proxy_cluster[p] == targets[i]]
        others = sorted((p for p in range(len(bank)) if p not in pos), key=lambda p: -s[p])
        denom = sum(math.exp(s[p] / tau) for p in pos + others[:k])
        per_sample.append(-sum(math.log(math.exp(s[p] / tau) / denom) for p in pos) / len(pos))
    if reduction == "mean":
        return sum(per_sample) / len(per_sample)
    total = 0.0
    for cam in set(cameras.tolist()):
        rows = [i for i in range(len(x)) if cameras[i] == cam]
        total += sum(per_sample[i] for i in rows) / len(rows)
    return total


@pytest.mark.parametrize("reduction", ["mean", "per_camera_sum"])
@pytest.mark.parametrize("k", [1, 2, 50])
def test_proxy_nce_is_its_definition(reduction, k):
    x, bank = unit(7, 0) * 3, unit(7, 1)  # x is normalised inside
    got = ice_proxy_nce(x, TARGETS, CAMERAS, bank, PROXY_CLUSTER, 0.07, k, reduction)
    want = brute_proxy(x, TARGETS, CAMERAS, bank, PROXY_CLUSTER, 0.07, k, reduction)
    assert got.item() == pytest.approx(want, rel=1e-9)


def test_proxy_nce_per_camera_sum_is_caps_inter_camera_loss_with_all_positives():
    # the ICE code's proxy loss is CAP's inter-camera loss (own-camera proxy positive too)
    x, bank = unit(7, 2), unit(7, 3)
    got = ice_proxy_nce(x, TARGETS, CAMERAS, bank, PROXY_CLUSTER, 0.07, 3, "per_camera_sum")
    cap = inter_camera_nce(
        x, TARGETS, CAMERAS, bank, PROXY_CLUSTER, PROXY_CAMERA, 0.07, 3, positives="all"
    )
    torch.testing.assert_close(got, cap)


def test_proxy_nce_gradient_reaches_x_only():
    x, bank = unit(7, 4).requires_grad_(True), unit(7, 5)
    ice_proxy_nce(x, TARGETS, CAMERAS, bank, PROXY_CLUSTER).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_proxy_nce_refuses_bad_inputs():
    x, bank = unit(7, 0), unit(7, 1)
    with pytest.raises(ValueError, match="cameras must have shape"):
        ice_proxy_nce(x, TARGETS, CAMERAS[:3], bank, PROXY_CLUSTER)
    with pytest.raises(ValueError, match="reduction must be one of"):
        ice_proxy_nce(x, TARGETS, CAMERAS, bank, PROXY_CLUSTER, reduction="sum")
    with pytest.raises(ValueError, match="temperature"):
        ice_proxy_nce(x, TARGETS, CAMERAS, bank, PROXY_CLUSTER, temperature=0)
    with pytest.raises(ValueError, match="cluster 2 has no proxy"):
        ice_proxy_nce(x, TARGETS, CAMERAS, bank, torch.tensor([0, 0, 0, 1, 1, 1, 1]))


LABELS = torch.tensor([0, 0, 1, 1, 2, 2])


def brute_hard_instance(s, t, y, tau):
    s, t = F.normalize(s, dim=1), F.normalize(t, dim=1)
    total = 0.0
    for i in range(len(s)):
        sims = [float(s[i] @ t[j]) for j in range(len(t))]
        hard = min(sims[j] for j in range(len(t)) if y[j] == y[i])
        negs = [sims[j] for j in range(len(t)) if y[j] != y[i]]
        denom = math.exp(hard / tau) + sum(math.exp(v / tau) for v in negs)
        total += -math.log(math.exp(hard / tau) / denom)
    return total / len(s)


@pytest.mark.parametrize("tau", [0.1, 0.5])
def test_hard_instance_nce_is_its_definition(tau):
    s, t = unit(6, 6) * 2, unit(6, 7)
    got = ice_hard_instance_nce(s, t, LABELS, tau)
    assert got.item() == pytest.approx(brute_hard_instance(s, t, LABELS, tau), rel=1e-9)


def test_hard_instance_nce_matches_the_codes_cross_entropy_on_pk_batches():
    # ICE's ViewContrastiveLoss: CE with target 0 over [hardest positive, all negatives] / T
    s, t = unit(6, 8), unit(6, 9)
    sim = F.normalize(s, dim=1) @ F.normalize(t, dim=1).T
    same = LABELS.view(-1, 1) == LABELS.view(1, -1)
    hard = sim.masked_fill(~same, 9.0).min(dim=1).values.view(-1, 1)
    negs = sim[~same].view(6, -1)
    want = F.cross_entropy(torch.cat([hard, negs], 1) / 0.1, torch.zeros(6, dtype=torch.long))
    torch.testing.assert_close(ice_hard_instance_nce(s, t, LABELS, 0.1), want)


def test_hard_instance_nce_one_cluster_is_zero_and_the_teacher_gets_no_gradient():
    s, t = unit(4, 10).requires_grad_(True), unit(4, 11).requires_grad_(True)
    assert ice_hard_instance_nce(s, t, torch.zeros(4, dtype=torch.long)).item() == 0.0
    ice_hard_instance_nce(s, t, LABELS[:4]).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0 and t.grad is None


def brute_soft(s, t, w, tau):
    s, t, w = (F.normalize(v, dim=1) for v in (s, t, w))
    n, total = len(s), 0.0
    for i in range(n):
        ps = [math.exp(float(s[i] @ t[j]) / tau) for j in range(n)]
        qs = [math.exp(float(w[i] @ w[j]) / tau) for j in range(n)]
        p = [v / sum(ps) for v in ps]
        q = [v / sum(qs) for v in qs]
        total += sum(q[j] * math.log(q[j] / p[j]) for j in range(n))
    return total / n


@pytest.mark.parametrize("tau", [0.4, 2.0])
def test_soft_consistency_is_the_kl_of_its_definition(tau):
    s, t, w = unit(6, 12) * 3, unit(6, 13), unit(6, 14)
    got = ice_soft_consistency(s, t, w, tau)
    assert got.item() == pytest.approx(brute_soft(s, t, w, tau), rel=1e-9)
    # the ICE code: KLDivLoss(batchmean)(softmax(s t^T / tau).log(), softmax(w w^T / tau))
    sn, tn, wn = (F.normalize(v, dim=1) for v in (s, t, w))
    code = F.kl_div(
        F.softmax(sn @ tn.T / tau, dim=1).log(),
        F.softmax(wn @ wn.T / tau, dim=1),
        reduction="batchmean",
    )
    torch.testing.assert_close(got, code)


def test_soft_consistency_is_zero_when_the_views_agree_and_trains_the_student_only():
    w = unit(5, 15)
    assert ice_soft_consistency(w, w, w).item() == pytest.approx(0.0, abs=1e-12)
    s = unit(5, 16).requires_grad_(True)
    t, weak = unit(5, 17).requires_grad_(True), unit(5, 18).requires_grad_(True)
    ice_soft_consistency(s, t, weak).backward()
    assert s.grad is not None and t.grad is None and weak.grad is None


def test_instance_losses_refuse_bad_inputs():
    s = unit(6, 0)
    with pytest.raises(ValueError, match=r"teacher must have shape \(6, 5\)"):
        ice_hard_instance_nce(s, unit(4, 1), LABELS)
    with pytest.raises(ValueError, match=r"targets must have shape \(6,\)"):
        ice_hard_instance_nce(s, unit(6, 1), LABELS[:3])
    with pytest.raises(TypeError, match="targets must be an integer tensor"):
        ice_hard_instance_nce(s, unit(6, 1), LABELS.float())
    with pytest.raises(ValueError, match="teacher_weak must have shape"):
        ice_soft_consistency(s, unit(6, 1), unit(5, 2))
    with pytest.raises(ValueError, match="temperature"):
        ice_soft_consistency(s, unit(6, 1), unit(6, 2), temperature=-1)
    with pytest.raises(ValueError, match="x must be a 2-D tensor"):
        ice_hard_instance_nce(s[0], unit(6, 1), LABELS)
