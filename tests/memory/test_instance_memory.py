"""HHCL instance memory: initialisation from cluster members and Eq. 8 overwrites."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from unreid.memory.instance_memory import InstanceMemory


def unit(n, d=4, seed=0):
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=1)


def test_reset_fills_slots_with_members_of_the_cluster():
    feats = unit(11)
    labels = torch.tensor([0, 0, 0, 0, 0, 1, 1, -1, 2, 2, 2])
    mem = InstanceMemory(4, slots=3)
    mem.reset(feats, labels, generator=torch.Generator().manual_seed(1))
    assert mem.bank.shape == (3, 3, 4)
    for c in range(3):
        members = feats[labels == c]
        rows = mem.bank[c]
        match = (rows @ members.T - 1).abs() < 1e-6  # each slot equals some member
        assert match.any(dim=1).all()
        if len(members) >= 3:  # enough members -> distinct members
            assert match.float().argmax(dim=1).unique().numel() == 3
        else:  # cluster 1 has 2 members: both appear, one again
            assert match.any(dim=0).all()
    assert not ((mem.bank.reshape(-1, 4) @ feats[7]) > 1 - 1e-6).any()  # outlier never used


def brute_force_update(bank, pointer, x, targets, slots):
    bank, pointer = bank.clone(), pointer.clone()
    per_cluster = {}
    for i, t in enumerate(targets.tolist()):
        per_cluster.setdefault(t, []).append(i)
    for c, idx in per_cluster.items():
        for i in idx[-slots:]:
            bank[c, pointer[c]] = x[i]
            pointer[c] = (pointer[c] + 1) % slots
    return bank, pointer


@pytest.mark.parametrize("targets", [[0, 0, 1, 1], [2, 0, 2, 2, 2, 1], [1], [0, 0, 0, 0, 0, 0, 0]])
def test_update_matches_ring_buffer_brute_force(targets):
    mem = InstanceMemory(4, slots=3)
    mem.reset(unit(9, seed=3), torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2]))
    for step in range(3):
        x = unit(len(targets), seed=10 + step)
        t = torch.tensor(targets)
        want_bank, want_ptr = brute_force_update(mem.bank, mem.pointer, x, t, 3)
        mem.update(x, t)
        torch.testing.assert_close(mem.bank, want_bank)
        assert mem.pointer.tolist() == want_ptr.tolist()


def test_pk_batch_overwrites_all_slots_as_eq8():
    mem = InstanceMemory(4, slots=2)
    mem.reset(unit(4, seed=5), torch.tensor([0, 0, 1, 1]))
    x = unit(4, seed=6)
    mem.update(x, torch.tensor([1, 0, 1, 0]))
    torch.testing.assert_close(mem.bank[0], x[[1, 3]])
    torch.testing.assert_close(mem.bank[1], x[[0, 2]])


def test_errors():
    mem = InstanceMemory(4, slots=2)
    with pytest.raises(RuntimeError, match="reset"):
        mem.update(unit(1), torch.tensor([0]))
    with pytest.raises(ValueError, match="all labels are -1"):
        mem.reset(unit(2), torch.tensor([-1, -1]))
    mem.reset(unit(2), torch.tensor([0, 0]))
    with pytest.raises(ValueError, match="targets must be in"):
        mem.update(unit(1), torch.tensor([1]))
    with pytest.raises(ValueError, match="slots"):
        InstanceMemory(4, slots=0)
