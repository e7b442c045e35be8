"""Every registered method: its config section, one training step, and its memory updates."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from unreid.memory.read_only_bank import ReadOnlyBank
from unreid.methods import METHODS, Batch, MethodContext, build_method, list_methods


def test_the_six_methods_are_registered():
    assert list_methods() == [
        "cap", "cluster_contrast", "csa_hps", "gcl_scl", "hhcl", "ice", "spcl", "spcl_uda",
    ]  # fmt: skip


@pytest.mark.parametrize("name", list_methods())
def test_every_method_has_a_checked_config_section(name):
    spec = METHODS.get(name)
    assert spec.name == name and dataclasses.is_dataclass(spec.config)
    section = spec.config()  # the defaults are valid
    assert build_method(name, section, MethodContext(8)).name == name
    with pytest.raises(TypeError, match=f"method {name!r} takes a {spec.config.__name__}"):
        build_method(name, object(), MethodContext(8))


@pytest.mark.parametrize("name", list_methods())
def test_every_method_steps_and_updates(name, setup_method, batch_of):
    _, m, feats, _ = setup_method(name)
    batch = batch_of(feats[[0, 1, 3, 4]], [0, 0, 1, 1])
    losses = m.losses(batch)
    total = sum(losses.values())
    assert torch.isfinite(total) and total.item() > 0
    total.backward()
    assert batch.features.grad is not None and batch.features.grad.abs().sum() > 0
    banks = {name: mod for name, mod in m.named_modules() if isinstance(mod, ReadOnlyBank)}
    assert banks, f"{name} has no memory"
    before = {k: mod.bank.clone() for k, mod in banks.items()}
    m.update_memories(Batch(batch.features.detach(), batch.targets, batch.cameras, batch.indexes))
    for key, mod in banks.items():  # every memory of the method moves, not just one of them
        assert not torch.equal(before[key], mod.bank), f"{name}: memory {key!r} did not move"


def test_unknown_method_lists_the_registered_ones():
    with pytest.raises(ValueError, match="unknown method 'hhlc'; available: cap, cluster_contrast"):
        build_method("hhlc", object(), MethodContext(8))
