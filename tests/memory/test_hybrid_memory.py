"""SpCL's hybrid memory: row layout, class centroids and updates against loops over rows."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from unreid.memory.hybrid_memory import HybridMemory

D = 6


def unit(n: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(n, D, generator=torch.Generator().manual_seed(seed)), dim=1)


def filled(source: int = 2, target: int = 5, momentum: float = 0.2) -> HybridMemory:
    m = HybridMemory(D, momentum)
    m.reset(unit(source, 0) if source else torch.zeros(0, D), unit(target, 1))
    return m


def test_rows_are_source_classes_then_target_images():
    m = filled()
    assert m.bank.shape == (7, D) and int(m.num_source) == 2 and m.num_target == 5
    assert torch.allclose(m.bank[:2], unit(2, 0)) and torch.allclose(m.bank[2:], unit(5, 1))
    m.set_target_classes(torch.tensor([0, 0, 1, 2, 1]))
    assert m.row_classes.tolist() == [0, 1, 2, 2, 3, 4, 3] and m.num_classes == 5


def test_centroids_are_plain_means_of_the_members_rows():
    m = filled()
    m.set_target_classes(torch.tensor([0, 0, 1, 2, 1]))
    want = torch.stack(
        [
            m.bank[0],
            m.bank[1],
            (m.bank[2] + m.bank[3]) / 2,
            (m.bank[4] + m.bank[6]) / 2,
            m.bank[5],
        ]
    )
    assert torch.allclose(m.centroids(), want)


def test_update_moves_each_row_in_batch_order_twice_for_a_repeated_row():
    m = filled()
    before = m.bank.clone()
    x = unit(4, 2) * 3  # not unit: the memory normalises
    rows = torch.tensor([3, 0, 3, 6])
    m.update(x, rows)
    want = before.clone()
    for b in range(4):  # the definition: one instance after the other
        r = int(rows[b])
        want[r] = F.normalize(0.2 * want[r] + 0.8 * F.normalize(x[b], dim=0), dim=0)
    assert torch.allclose(m.bank, want, atol=1e-6)
    untouched = [1, 2, 4, 5]
    assert torch.equal(m.bank[untouched], before[untouched])


def test_state_dict_resizes_an_empty_memory():
    m = filled()
    m.set_target_classes(torch.tensor([0, 1, 1, 2, 3]))
    fresh = HybridMemory(D, 0.2)
    fresh.load_state_dict(m.state_dict())
    assert torch.equal(fresh.bank, m.bank) and torch.equal(fresh.row_classes, m.row_classes)
    assert int(fresh.num_source) == 2


def test_bad_input_is_named():
    m = filled()
    with pytest.raises(ValueError, match="one per target image"):
        m.set_target_classes(torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="contiguous"):
        m.set_target_classes(torch.tensor([0, 0, 2, 2, 2]))
    with pytest.raises(ValueError, match=r"rows must be in \[0, 7\)"):
        m.update(unit(1, 3), torch.tensor([7]))
    with pytest.raises(ValueError, match="target must hold"):
        HybridMemory(D).reset(unit(1, 0), torch.zeros(0, D))
    with pytest.raises(ValueError, match="momentum"):
        HybridMemory(D, 1.0)
