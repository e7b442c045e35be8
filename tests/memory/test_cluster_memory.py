"""The cluster-memory base: reset, the read-only bank, state, errors, and the explicit
update against the reference's update-inside-backward formulation.

Each policy against a plain loop over samples is in test_policies.py."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from memory_helpers import memory_at as _memory
from memory_helpers import unit as _unit
from torch import autograd, nn

from unreid.losses import cluster_nce
from unreid.memory import (
    ClusterMemory,
    HardClusterMemory,
    MeanClusterMemory,
    MomentumClusterMemory,
    TopKClusterMemory,
)

D = 6


# --- reset, reads, state ----------------------------------------------------------------


def test_reset_normalises_and_keeps_module_dtype():
    mem = MomentumClusterMemory(3)
    assert mem.num_clusters == 0
    mem.reset(torch.tensor([[3.0, 0.0, 4.0], [0.0, 2.0, 0.0]], dtype=torch.float64))
    assert mem.num_clusters == 2
    assert mem.bank.dtype == torch.float32
    torch.testing.assert_close(mem.bank, torch.tensor([[0.6, 0.0, 0.8], [0.0, 1.0, 0.0]]))
    mem.reset(torch.ones(5, 3))
    assert mem.num_clusters == 5


def test_reading_the_bank_gives_no_grad_to_it():
    # was test_similarities_is_a_pure_read_without_grad_to_bank (similarities() is gone):
    # the same checks, on the read every loss makes
    bank = _unit(4, D, seed=4)
    mem = _memory(MomentumClusterMemory, bank, 0.1)
    before = mem.bank.clone()
    x = _unit(3, D, seed=5).requires_grad_()
    sims = x @ mem.bank.T
    torch.testing.assert_close(sims, x.detach() @ bank.T)
    sims.sum().backward()
    assert not mem.bank.requires_grad
    torch.testing.assert_close(mem.bank, before, rtol=0, atol=0)
    torch.testing.assert_close(x.grad, bank.sum(0).expand(3, D))


def test_bank_is_read_only():
    mem = _memory(MomentumClusterMemory, _unit(4, D, seed=4), 0.1)
    with pytest.raises(AttributeError, match="bank is read-only"):
        mem.bank = torch.zeros(4, D)
    assert mem.num_clusters == 4 and "bank" in dict(mem.named_buffers())


def test_bank_is_a_buffer_in_state_dict_and_reloads_with_any_row_count():
    mem = _memory(HardClusterMemory, _unit(7, D, seed=6), 0.2)
    assert list(mem.parameters()) == []
    fresh = HardClusterMemory(D, 0.2).double()
    fresh.load_state_dict(mem.state_dict())
    assert fresh.num_clusters == 7
    torch.testing.assert_close(fresh.bank, mem.bank, rtol=0, atol=0)


def test_update_accepts_empty_batch():
    bank = _unit(3, D, seed=7)
    mem = _memory(MeanClusterMemory, bank, 0.1)
    before = mem.bank.clone()
    mem.update(torch.zeros(0, D, dtype=torch.float64), torch.zeros(0, dtype=torch.long))
    torch.testing.assert_close(mem.bank, before, rtol=0, atol=0)


# --- errors -------------------------------------------------------------------------


def test_constructor_errors():
    with pytest.raises(TypeError):
        ClusterMemory(4)  # abstract
    with pytest.raises(ValueError, match="num_features must be a positive int"):
        MomentumClusterMemory(0)
    with pytest.raises(ValueError, match=r"momentum must be in \[0, 1\]"):
        MomentumClusterMemory(4, momentum=1.5)


@pytest.mark.parametrize(
    ("centroids", "error", "match"),
    [
        (torch.ones(3, 5), ValueError, r"centroids must have shape \(C, 4\), found \(3, 5\)"),
        (torch.ones(4), ValueError, r"shape \(C, 4\), found \(4,\)"),
        (torch.ones(0, 4), ValueError, "at least one row"),
        (torch.ones(2, 4, dtype=torch.long), TypeError, "floating point"),
        (torch.tensor([[1.0, 0, 0, float("nan")]]), ValueError, "finite"),
        (torch.tensor([[1.0, 0, 0, 0], [0.0, 0, 0, 0]]), ValueError, r"zero rows at \[1\]"),
        (np.ones((2, 4)), TypeError, "torch.Tensor"),
    ],
)
def test_reset_errors(centroids, error, match):
    with pytest.raises(error, match=match):
        MomentumClusterMemory(4).reset(centroids)


def test_update_and_read_errors():
    mem = MomentumClusterMemory(4)
    with pytest.raises(RuntimeError, match="call reset"):
        mem.update(torch.ones(2, 4), torch.tensor([0, 0]))
    mem.reset(torch.eye(4)[:3])
    with pytest.raises(
        ValueError, match=r"targets must be cluster ids in \[0, 3\), found .*\[0, 3\]"
    ):
        mem.update(torch.ones(2, 4), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match=r"found values in \[-1, 1\]"):
        mem.update(torch.ones(2, 4), torch.tensor([-1, 1]))
    with pytest.raises(ValueError, match=r"targets must have shape \(2,\), found \(3,\)"):
        mem.update(torch.ones(2, 4), torch.tensor([0, 1, 2]))
    with pytest.raises(TypeError, match="integer tensor"):
        mem.update(torch.ones(2, 4), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"x must have shape \(B, 4\), found \(2, 3\)"):
        mem.update(torch.ones(2, 3), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"x must have shape \(B, 4\)"):
        mem.update(torch.ones(4), torch.tensor([0]))  # was similarities(torch.ones(4))


def test_select_and_update_selected_errors():
    mem = TopKClusterMemory(4, k=1)
    with pytest.raises(RuntimeError, match="call reset"):
        mem.select(torch.ones(2, 4), torch.tensor([0, 0]))
    mem.reset(torch.eye(4)[:3])
    with pytest.raises(ValueError, match=r"targets must be cluster ids in \[0, 3\)"):
        mem.select(torch.ones(2, 4), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match=r"positions and ranks must be two \(S,\) tensors"):
        mem.update_selected(
            torch.ones(2, 4), torch.tensor([0, 1]), torch.tensor([0, 1]), torch.tensor([0])
        )
    before = mem.bank.clone()
    empty = torch.zeros(0, dtype=torch.long)
    mem.update_selected(torch.ones(2, 4), torch.tensor([0, 1]), empty, empty)  # nothing chosen
    torch.testing.assert_close(mem.bank, before, rtol=0, atol=0)


# --- equivalence with the reference formulation (update inside backward) -----------------


class _RefCM(autograd.Function):
    """Reference style: forward reads the bank, backward returns grads then updates in place."""

    @staticmethod
    def forward(ctx, inputs, targets, features, momentum):
        ctx.features, ctx.momentum = features, momentum
        ctx.save_for_backward(inputs, targets)
        return inputs.mm(features.t())

    @staticmethod
    def backward(ctx, grad_outputs):
        inputs, targets = ctx.saved_tensors
        grad_inputs = grad_outputs.mm(ctx.features)
        for x, y in zip(inputs, targets, strict=True):
            ctx.features[y] = ctx.momentum * ctx.features[y] + (1.0 - ctx.momentum) * x
            ctx.features[y] /= ctx.features[y].norm()
        return grad_inputs, None, None, None


class _RefCMHard(_RefCM):
    @staticmethod
    def backward(ctx, grad_outputs):
        inputs, targets = ctx.saved_tensors
        grad_inputs = grad_outputs.mm(ctx.features)
        by_cluster: dict[int, list[torch.Tensor]] = {}
        for x, y in zip(inputs, targets.tolist(), strict=True):
            by_cluster.setdefault(y, []).append(x)
        for y, feats in by_cluster.items():
            dists = [
                float(f.unsqueeze(0).mm(ctx.features[y].unsqueeze(0).t())[0, 0]) for f in feats
            ]
            hardest = feats[int(np.argmin(dists))]
            ctx.features[y] = ctx.features[y] * ctx.momentum + (1 - ctx.momentum) * hardest
            ctx.features[y] /= ctx.features[y].norm()
        return grad_inputs, None, None, None


@pytest.mark.parametrize(
    ("ref_fn", "cls"), [(_RefCM, MomentumClusterMemory), (_RefCMHard, HardClusterMemory)]
)
def test_explicit_update_matches_update_in_backward(ref_fn, cls):
    torch.manual_seed(0)
    num_clusters, temp, momentum = 5, 0.05, 0.1
    ref_model = nn.Linear(10, D).double()
    our_model = copy.deepcopy(ref_model)
    ref_opt = torch.optim.SGD(ref_model.parameters(), lr=0.5)
    our_opt = torch.optim.SGD(our_model.parameters(), lr=0.5)
    init = _unit(num_clusters, D, seed=8)
    ref_bank = init.clone()
    memory = _memory(cls, init, momentum)

    for step in range(4):
        g = torch.Generator().manual_seed(100 + step)
        images = torch.randn(16, 10, generator=g, dtype=torch.float64)
        targets = torch.randint(num_clusters, (16,), generator=g)

        ref_opt.zero_grad()
        inputs = F.normalize(ref_model(images), dim=1)
        logits = ref_fn.apply(inputs, targets, ref_bank, momentum) / temp
        F.cross_entropy(logits, targets).backward()
        ref_grads = [p.grad.clone() for p in ref_model.parameters()]
        ref_opt.step()

        our_opt.zero_grad()
        out = our_model(images)
        cluster_nce(out, targets, memory.bank, temperature=temp).backward()
        our_grads = [p.grad.clone() for p in our_model.parameters()]
        our_opt.step()
        memory.update(out.detach(), targets)

        for ours, ref in zip(our_grads, ref_grads, strict=True):
            torch.testing.assert_close(ours, ref, rtol=0, atol=1e-6)
        torch.testing.assert_close(memory.bank, ref_bank, rtol=0, atol=1e-6)
        assert not torch.equal(memory.bank, init)  # the bank did move


def test_start_cosine_is_the_mean_cosine_to_the_reset_rows():
    from unreid.memory import build_cluster_memory

    memory = build_cluster_memory("mean", 4, 0.5)
    assert memory.start_cosine() is None
    start = torch.nn.functional.normalize(
        torch.randn(3, 4, generator=torch.Generator().manual_seed(0)), dim=1
    )
    memory.reset(start)
    assert memory.start_cosine() == pytest.approx(1.0)
    x = torch.nn.functional.normalize(
        torch.randn(2, 4, generator=torch.Generator().manual_seed(1)), dim=1
    )
    memory.update(x, torch.tensor([0, 0]))
    want = (memory.bank * start).sum(dim=1).mean().item()
    assert memory.start_cosine() == pytest.approx(want)
    assert want < 1.0
