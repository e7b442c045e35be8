"""Hard instance contrast (HHCL Eq. 5-7) against a per-query, per-cluster brute force."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from unreid.losses import hard_instance_logits, hard_instance_nce


def brute_force_loss(x, targets, bank, tau):
    total = 0.0
    for b in range(x.shape[0]):
        q = x[b] / x[b].norm()
        logits = []
        for c in range(bank.shape[0]):
            sims = [float(q @ bank[c, k]) for k in range(bank.shape[1])]
            logits.append((min(sims) if c == int(targets[b]) else max(sims)) / tau)
        m = max(logits)
        log_z = m + math.log(sum(math.exp(v - m) for v in logits))
        total += log_z - logits[int(targets[b])]
    return total / x.shape[0]


@pytest.mark.parametrize("seed,c,k,b", [(0, 5, 3, 8), (1, 12, 4, 16), (2, 2, 1, 5)])
def test_loss_matches_brute_force(seed, c, k, b):
    g = torch.Generator().manual_seed(seed)
    bank = F.normalize(torch.randn(c, k, 6, generator=g, dtype=torch.float64), dim=2)
    x = torch.randn(b, 6, generator=g, dtype=torch.float64)
    y = torch.randint(0, c, (b,), generator=g)
    got = hard_instance_nce(x, y, bank, temperature=0.1)
    assert got.item() == pytest.approx(brute_force_loss(x, y, bank, 0.1), rel=1e-10)


def test_hard_positive_is_least_and_negative_most_similar():
    # 2-D bank: cluster 0 has slots at 0° and 90°, cluster 1 at 180° and 45°.
    deg = lambda a: [math.cos(math.radians(a)), math.sin(math.radians(a))]  # noqa: E731
    bank = torch.tensor([[deg(0), deg(90)], [deg(180), deg(45)]], dtype=torch.float64)
    q = torch.tensor([deg(10)], dtype=torch.float64)
    logits = hard_instance_logits(q, torch.tensor([0]), bank)
    # own cluster 0: least similar slot is 90° -> cos 80°; cluster 1: most similar is 45° -> cos 35°
    assert logits[0, 0].item() == pytest.approx(math.cos(math.radians(80)))
    assert logits[0, 1].item() == pytest.approx(math.cos(math.radians(35)))
    # as a query of cluster 1 the roles swap: own -> 180° (cos 170°), other -> 0° (cos 10°)
    logits = hard_instance_logits(q, torch.tensor([1]), bank)
    assert logits[0, 1].item() == pytest.approx(math.cos(math.radians(170)))
    assert logits[0, 0].item() == pytest.approx(math.cos(math.radians(10)))


def test_gradient_flows_only_through_selected_instances():
    bank = F.normalize(torch.randn(3, 4, 5, dtype=torch.float64), dim=2)
    x = F.normalize(torch.randn(2, 5, dtype=torch.float64), dim=1).requires_grad_(True)
    y = torch.tensor([0, 2])
    hard_instance_logits(x, y, bank).sum().backward()
    sims = torch.einsum("bd,ckd->bck", x.detach(), bank)
    expected = torch.zeros_like(x)
    for b in range(2):
        for c in range(3):
            k = sims[b, c].argmin() if c == y[b] else sims[b, c].argmax()
            expected[b] += bank[c, k]
    torch.testing.assert_close(x.grad, expected)


def test_bad_inputs():
    bank = torch.zeros(3, 2, 4)
    with pytest.raises(ValueError, match=r"bank must have shape \(C, K, 5\) to match x"):
        hard_instance_logits(torch.zeros(2, 5), torch.tensor([0, 1]), bank)
    with pytest.raises(ValueError, match=r"targets must be bank row ids in \[0, 3\)"):
        hard_instance_logits(torch.zeros(2, 4), torch.tensor([0, 3]), bank)
    with pytest.raises(ValueError, match="temperature"):
        hard_instance_nce(torch.zeros(2, 4), torch.tensor([0, 1]), bank, temperature=0)
