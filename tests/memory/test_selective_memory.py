"""SCL selection and memory update, against loops written from Eq. 6."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from unreid.memory import MeanClusterMemory, SelectiveClusterMemory
from unreid.memory.selection import least_similar_per_cluster, random_per_cluster


def test_least_similar_selection_on_a_hand_made_batch():
    sims = torch.tensor([0.9, 0.1, 0.5, 0.3, 0.2, 0.8, 0.3])
    targets = torch.tensor([0, 0, 0, 1, 1, 1, 1])
    pos, rank = least_similar_per_cluster(sims, targets, 2)
    assert pos.tolist() == [1, 4, 2, 3] and rank.tolist() == [0, 0, 1, 1]  # tie 3/6: first
    pos, rank = least_similar_per_cluster(sims, targets, 1)
    assert pos.tolist() == [1, 4]
    pos, rank = least_similar_per_cluster(sims, targets, 5)  # k beyond the cluster size
    assert sorted(pos.tolist()) == list(range(7))
    assert pos[rank == 3].tolist() == [5]  # only cluster 1 has a fourth instance


def reference_topk(bank, x, targets, k, eta):
    """Eq. 6 from the definition: per cluster, rank once, then k sequential steps."""
    bank = bank.clone()
    x = F.normalize(x, dim=1)
    for c in sorted(set(targets.tolist())):
        members = [i for i in range(len(targets)) if targets[i] == c]
        sims = {i: float(x[i] @ bank[c]) for i in members}
        ranked = sorted(members, key=lambda i: (sims[i], i))[:k]
        for i in ranked:
            bank[c] = F.normalize(eta * bank[c] + (1 - eta) * x[i], dim=0)
    return bank


@pytest.mark.parametrize("k", [1, 2, 4])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_topk_update_matches_the_definition(k, seed):
    g = torch.Generator().manual_seed(seed)
    bank = F.normalize(torch.randn(6, 5, generator=g), dim=1)
    x = torch.randn(24, 5, generator=g)
    targets = torch.randint(0, 6, (24,), generator=g)
    mem = SelectiveClusterMemory(5, momentum=0.2, policy="topk", k=k)
    mem.reset(bank)
    mem.update(x, targets)
    torch.testing.assert_close(mem.bank, reference_topk(bank, x, targets, k, 0.2))


def test_update_order_matters_and_is_hardest_first():
    bank = torch.tensor([[1.0, 0.0]])
    x = torch.tensor([[0.0, 1.0], [0.6, 0.8], [1.0, 0.0]])  # sims 0, 0.6, 1
    mem = SelectiveClusterMemory(2, momentum=0.5, policy="topk", k=2)
    mem.reset(bank)
    mem.update(x, torch.zeros(3, dtype=torch.long))
    want = F.normalize(0.5 * bank[0] + 0.5 * x[0], dim=0)  # hardest first ...
    want = F.normalize(0.5 * want + 0.5 * x[1], dim=0)  # ... then the second hardest
    torch.testing.assert_close(mem.bank[0], want)
    reverse = F.normalize(0.5 * F.normalize(0.5 * bank[0] + 0.5 * x[1], dim=0) + 0.5 * x[0], dim=0)
    assert not torch.allclose(want, reverse)


def test_average_policy_is_the_batch_mean_update():
    g = torch.Generator().manual_seed(5)
    bank = F.normalize(torch.randn(4, 3, generator=g), dim=1)
    x = torch.randn(10, 3, generator=g)
    targets = torch.tensor([0, 0, 1, 1, 1, 3, 3, 0, 1, 3])
    sel = SelectiveClusterMemory(3, momentum=0.2, policy="average")
    ref = MeanClusterMemory(3, momentum=0.2)
    sel.reset(bank)
    ref.reset(bank)
    sel.update(x, targets)
    ref.update(x, targets)
    torch.testing.assert_close(sel.bank, ref.bank)
    torch.testing.assert_close(sel.bank[2], bank[2])  # absent cluster untouched


def test_random_policy_picks_one_seeded_instance_per_cluster():
    targets = torch.tensor([0, 0, 0, 1, 1, 2])
    draws = set()
    for s in range(30):
        pos, rank = random_per_cluster(targets, 1, torch.Generator().manual_seed(s))
        assert sorted(targets[pos].tolist()) == [0, 1, 2] and (rank == 0).all()
        again, _ = random_per_cluster(targets, 1, torch.Generator().manual_seed(s))
        assert torch.equal(pos, again)
        draws.add(tuple(pos.tolist()))
    assert len(draws) > 1


def test_selection_applied_later_equals_a_direct_update():
    g = torch.Generator().manual_seed(9)
    bank = F.normalize(torch.randn(3, 4, generator=g), dim=1)
    x = torch.randn(9, 4, generator=g)
    targets = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2])
    a = SelectiveClusterMemory(4, policy="topk", k=2)
    b = SelectiveClusterMemory(4, policy="topk", k=2)
    a.reset(bank)
    b.reset(bank)
    pos, rank = a.select(x, targets)
    a.update_selected(x, targets, pos, rank)
    b.update(x, targets)
    torch.testing.assert_close(a.bank, b.bank)


def test_bad_settings():
    with pytest.raises(ValueError, match="policy"):
        SelectiveClusterMemory(4, policy="hardest")
    with pytest.raises(ValueError, match="k must"):
        SelectiveClusterMemory(4, k=0)
    with pytest.raises(ValueError, match="k must"):
        least_similar_per_cluster(torch.zeros(2), torch.zeros(2, dtype=torch.long), 0)
