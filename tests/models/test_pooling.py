"""Pooling heads: GeM's limits, and the shape / constant-input contract of every registered one."""

from __future__ import annotations

import pytest
import torch

from unreid.models.pooling import GeM, build_pooling, list_poolings


def test_gem_is_avg_at_p1_and_tends_to_max():
    x = torch.rand(2, 3, 5, 4) + 0.01
    gem1 = GeM(1.0)
    assert torch.allclose(gem1(x), x.mean(dim=(2, 3), keepdim=True), atol=1e-6)
    gem_big = GeM(200.0)
    assert torch.allclose(gem_big(x), x.amax(dim=(2, 3), keepdim=True), rtol=0.02)
    assert build_pooling("gem").p.requires_grad


def test_unknown_pooling_lists_the_available_ones():
    with pytest.raises(ValueError, match="available"):
        build_pooling("median")


def test_registry_holds_the_documented_names():
    assert {"avg", "gem", "max"} <= set(list_poolings())


@pytest.mark.parametrize("name", list_poolings())
def test_pooling_maps_bchw_to_bc_and_is_avg_on_a_constant_map(name):
    x = torch.rand(3, 5, 4, 2) + 0.1
    pooled = build_pooling(name)(x)
    assert pooled.shape == (3, 5, 1, 1) and pooled.flatten(1).shape == (3, 5)
    constant = torch.full((2, 4, 3, 3), 0.7)
    avg = build_pooling("avg")(constant)
    torch.testing.assert_close(build_pooling(name)(constant), avg)


@pytest.mark.parametrize("name", list_poolings())
def test_each_build_is_a_fresh_module(name):
    """Two models must not share a learnt pooling parameter (GeM's exponent)."""
    a, b = build_pooling(name), build_pooling(name)
    assert a is not b
    shared = {id(p) for p in a.parameters()} & {id(p) for p in b.parameters()}
    assert not shared
