"""Selective contrastive loss (Eq. 7) against a per-cluster brute force."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from unreid.losses import cluster_nce, selective_nce
from unreid.memory.selection import least_similar_per_cluster


def brute_force(x, targets, bank, k, tau):
    terms = []
    xn = F.normalize(x, dim=1)
    for c in sorted(set(targets.tolist())):
        members = [i for i in range(len(targets)) if targets[i] == c]
        ranked = sorted(members, key=lambda i: (float(xn[i] @ bank[c]), i))[:k]
        for i in ranked:
            logits = [float(xn[i] @ bank[j]) / tau for j in range(bank.shape[0])]
            top = max(logits)
            lse = top + math.log(sum(math.exp(v - top) for v in logits))
            terms.append(lse - logits[c])
    return sum(terms) / len(terms)


@pytest.mark.parametrize("k", [1, 2, 4])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_brute_force(k, seed):
    g = torch.Generator().manual_seed(seed)
    bank = F.normalize(torch.randn(7, 6, generator=g, dtype=torch.float64), dim=1)
    x = torch.randn(20, 6, generator=g, dtype=torch.float64)
    targets = torch.randint(0, 7, (20,), generator=g)
    got = selective_nce(x, targets, bank, k=k, temperature=0.1)
    assert got.item() == pytest.approx(brute_force(x, targets, bank, k, 0.1), rel=1e-9)


def test_gradient_reaches_only_the_selected_instances():
    g = torch.Generator().manual_seed(3)
    bank = F.normalize(torch.randn(3, 5, generator=g), dim=1)
    x = torch.randn(12, 5, generator=g, requires_grad=True)
    targets = torch.tensor([0, 1, 2] * 4)
    selective_nce(x, targets, bank, k=2).backward()
    touched = (x.grad.abs().sum(dim=1) > 0).sum().item()
    assert touched == 6  # 2 per cluster of 4


def test_bad_input():
    with pytest.raises(ValueError, match="targets"):
        selective_nce(torch.zeros(2, 3), torch.tensor([0, 5]), torch.eye(3))


def test_positions_from_the_caller_replace_the_ranking():
    g = torch.Generator().manual_seed(4)
    bank = F.normalize(torch.randn(3, 5, generator=g, dtype=torch.float64), dim=1)
    x = torch.randn(9, 5, generator=g, dtype=torch.float64)
    targets = torch.tensor([0, 1, 2] * 3)
    positions = torch.tensor([4, 0, 8])  # e.g. a random draw made by the memory
    got = selective_nce(x, targets, bank, temperature=0.1, positions=positions)
    want = cluster_nce(x[positions], targets[positions], bank, 0.1)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    default = selective_nce(x, targets, bank, k=1, temperature=0.1)
    chosen = least_similar_per_cluster((F.normalize(x, dim=1) * bank[targets]).sum(1), targets, 1)[
        0
    ]
    torch.testing.assert_close(
        default, selective_nce(x, targets, bank, temperature=0.1, positions=chosen)
    )
    with pytest.raises(ValueError, match=r"positions must be batch positions in \[0, 9\)"):
        selective_nce(x, targets, bank, positions=torch.tensor([9]))
