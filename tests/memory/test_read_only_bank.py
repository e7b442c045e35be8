"""The bank buffer: readable and saved like any buffer, replaced only by the memory itself."""

from __future__ import annotations

import copy

import pytest
import torch

from unreid.memory import CameraProxyMemory, InstanceMemory, MomentumClusterMemory
from unreid.memory.read_only_bank import ReadOnlyBank


def test_bank_is_a_buffer_that_follows_the_module():
    holder = ReadOnlyBank(torch.zeros(2, 3))
    assert [name for name, _ in holder.named_buffers()] == ["bank"]
    assert list(holder.state_dict()) == ["bank"]
    assert holder.double().bank.dtype == torch.float64
    clone = copy.deepcopy(holder)
    assert torch.equal(clone.bank, holder.bank) and clone.bank is not holder.bank


@pytest.mark.parametrize(
    "memory",
    [ReadOnlyBank(torch.zeros(1, 2)), MomentumClusterMemory(2), InstanceMemory(2, slots=1)],
    ids=["base", "cluster", "instance"],
)
def test_assigning_the_bank_is_refused(memory):
    before = memory.bank
    with pytest.raises(AttributeError, match="bank is read-only"):
        memory.bank = torch.ones(1, 2)
    assert memory.bank is before


def test_camera_proxies_expose_their_rows_read_only():
    proxies = CameraProxyMemory(2)
    with pytest.raises(AttributeError):
        proxies.bank = torch.ones(1, 2)
    assert "rows.bank" in proxies.state_dict()
