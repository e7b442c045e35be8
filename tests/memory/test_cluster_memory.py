"""Cluster memories: each update policy against a plain loop over samples, and the
explicit update against the reference's update-inside-backward formulation."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import autograd, nn

from unreid.losses import cluster_nce
from unreid.memory import (
    ClusterMemory,
    HardClusterMemory,
    MeanClusterMemory,
    MomentumClusterMemory,
    build_cluster_memory,
)

D = 6


def _unit(*shape: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g, dtype=torch.float64), dim=1)


def _memory(cls: type[ClusterMemory], bank: torch.Tensor, momentum: float) -> ClusterMemory:
    mem = cls(bank.shape[1], momentum).double()
    mem.reset(bank)
    return mem


# --- brute-force references, one Python step at a time -------------------------------


def _step(row: torch.Tensor, x: torch.Tensor, m: float) -> torch.Tensor:
    row = m * row + (1 - m) * x
    return row / row.norm()


def _loop_momentum(bank, x, targets, m):
    bank = bank.clone()
    for xi, y in zip(x, targets.tolist(), strict=True):
        bank[y] = _step(bank[y], xi, m)
    return bank


def _loop_hard(bank, x, targets, m):
    old, bank = bank, bank.clone()
    for y in dict.fromkeys(targets.tolist()):
        idx = [i for i, t in enumerate(targets.tolist()) if t == y]
        sims = [float(x[i] @ old[y]) for i in idx]
        hardest = idx[sims.index(min(sims))]  # first minimum in batch order
        bank[y] = _step(old[y], x[hardest], m)
    return bank


def _loop_mean(bank, x, targets, m):
    old, bank = bank, bank.clone()
    for y in dict.fromkeys(targets.tolist()):
        members = [x[i] for i, t in enumerate(targets.tolist()) if t == y]
        bank[y] = _step(old[y], sum(members) / len(members), m)
    return bank


LOOPS = [
    (MomentumClusterMemory, _loop_momentum),
    (HardClusterMemory, _loop_hard),
    (MeanClusterMemory, _loop_mean),
]


@pytest.mark.parametrize(("cls", "loop"), LOOPS)
@pytest.mark.parametrize("momentum", [0.0, 0.1, 0.5, 1.0])
def test_policy_matches_python_loop(cls, loop, momentum):
    bank = _unit(5, D, seed=0)
    x = _unit(12, D, seed=1)
    targets = torch.tensor([3, 0, 3, 3, 1, 0, 3, 1, 1, 3, 0, 3])  # cluster 2 and 4 absent
    mem = _memory(cls, bank, momentum)
    mem.update(x, targets)
    expected = loop(bank, x, targets, momentum)
    torch.testing.assert_close(mem.bank, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(mem.bank[[2, 4]], bank[[2, 4]], rtol=0, atol=0)


@pytest.mark.parametrize(("cls", "loop"), LOOPS)
def test_update_normalises_inputs(cls, loop):
    bank = _unit(4, D, seed=2)
    x = _unit(8, D, seed=3)
    scales = torch.linspace(0.5, 7.0, 8, dtype=torch.float64).unsqueeze(1)
    targets = torch.tensor([0, 1, 1, 2, 0, 0, 3, 1])
    mem = _memory(cls, bank, 0.3)
    mem.update(x * scales, targets)
    torch.testing.assert_close(mem.bank, loop(bank, x, targets, 0.3), rtol=0, atol=1e-12)


def test_momentum_is_sequential_within_cluster():
    # Two instances of one cluster: the second must see the row moved by the first.
    bank = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    x = torch.tensor([[0.0, 1.0], [-1.0, 0.0]], dtype=torch.float64)
    mem = _memory(MomentumClusterMemory, bank, 0.5)
    mem.update(x, torch.tensor([0, 0]))
    first = F.normalize(torch.tensor([0.5, 0.5], dtype=torch.float64), dim=0)
    second = F.normalize(0.5 * first + 0.5 * x[1], dim=0)
    torch.testing.assert_close(mem.bank[0], second)
    torch.testing.assert_close(mem.bank[1], bank[1])


def test_momentum_weights_the_old_row():
    # momentum=0.1 (published setting): the new sample dominates.
    bank = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    mem = _memory(MomentumClusterMemory, bank, 0.1)
    mem.update(torch.tensor([[0.0, 1.0]], dtype=torch.float64), torch.tensor([0]))
    expected = F.normalize(torch.tensor([0.1, 0.9], dtype=torch.float64), dim=0)
    torch.testing.assert_close(mem.bank[0], expected)


def test_hard_picks_least_similar_and_first_on_ties():
    bank = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    easy = [1.0, 0.0]
    hard = [0.0, 1.0]
    tie = [0.0, -1.0]  # same cosine (0) as `hard`, later in the batch
    x = torch.tensor([easy, hard, tie], dtype=torch.float64)
    mem = _memory(HardClusterMemory, bank, 0.5)
    mem.update(x, torch.tensor([0, 0, 0]))
    torch.testing.assert_close(mem.bank[0], F.normalize(torch.tensor([0.5, 0.5]).double(), dim=0))


def test_mean_uses_unnormalised_batch_mean():
    bank = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    x = torch.tensor([[0.0, 1.0], [-1.0, 0.0]], dtype=torch.float64)
    mem = _memory(MeanClusterMemory, bank, 0.5)
    mem.update(x, torch.tensor([0, 0]))
    # 0.5*[1,0] + 0.5*[-0.5,0.5] = [0.25, 0.25]
    torch.testing.assert_close(mem.bank[0], F.normalize(torch.tensor([1.0, 1.0]).double(), dim=0))


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


def test_similarities_is_a_pure_read_without_grad_to_bank():
    bank = _unit(4, D, seed=4)
    mem = _memory(MomentumClusterMemory, bank, 0.1)
    before = mem.bank.clone()
    x = _unit(3, D, seed=5).requires_grad_()
    sims = mem.similarities(x)
    torch.testing.assert_close(sims, x.detach() @ bank.T)
    sims.sum().backward()
    assert not mem.bank.requires_grad
    torch.testing.assert_close(mem.bank, before, rtol=0, atol=0)
    torch.testing.assert_close(x.grad, bank.sum(0).expand(3, D))


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


def test_build_cluster_memory():
    assert type(build_cluster_memory("momentum", 4, 0.1)) is MomentumClusterMemory
    assert type(build_cluster_memory("hard", 4)) is HardClusterMemory
    mem = build_cluster_memory("mean", 4, 0.3)
    assert type(mem) is MeanClusterMemory and mem.momentum == 0.3 and mem.num_features == 4
    with pytest.raises(ValueError, match=r"policy must be one of \['hard', 'mean', 'momentum'\]"):
        build_cluster_memory("median", 4)


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
        mem.similarities(torch.ones(4))


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
