"""Each update policy against a plain loop over samples (Eq. 6 for SCL's top-k), the
registry and factory, and the contract every registered policy keeps."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from memory_helpers import memory_at as _memory
from memory_helpers import unit as _unit

from unreid.losses import cluster_nce
from unreid.memory import (
    MEMORIES,
    HardClusterMemory,
    MeanClusterMemory,
    MomentumClusterMemory,
    RandomClusterMemory,
    TopKClusterMemory,
    build_cluster_memory,
    list_memories,
)
from unreid.memory.selection import least_similar_per_cluster
from unreid.registry import UnknownNameError

D = 6


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


# --- the merged mean rule ("mean", alias "average") ------------------------------------


@pytest.mark.parametrize("name", ["mean", "average"])
@pytest.mark.parametrize("path", ["update", "select_then_apply"])
def test_mean_rule_matches_python_loop_by_either_name_and_path(name, path):
    bank = _unit(5, D, seed=10)
    x = _unit(11, D, seed=11)
    targets = torch.tensor([4, 0, 4, 1, 1, 4, 0, 0, 4, 1, 0])  # clusters 2 and 3 absent
    mem = build_cluster_memory(name, D, 0.3).double()
    assert type(mem) is MeanClusterMemory
    mem.reset(bank)
    if path == "update":
        mem.update(x, targets)
    else:
        mem.update_selected(x, targets, *mem.select(x, targets))
    torch.testing.assert_close(mem.bank, _loop_mean(bank, x, targets, 0.3), rtol=0, atol=1e-12)


def test_mean_rule_on_a_callers_subset_averages_only_that_subset():
    bank = _unit(3, D, seed=12)
    x = _unit(7, D, seed=13)
    targets = torch.tensor([0, 0, 1, 1, 1, 2, 0])
    chosen = [0, 2, 3, 6]  # cluster 2 left out, cluster 0 and 1 partly
    mem = _memory(MeanClusterMemory, bank, 0.4)
    mem.update_selected(x, targets, torch.tensor(chosen), torch.zeros(4, dtype=torch.long))
    expected = bank.clone()
    for y in (0, 1):
        members = [x[i] for i in chosen if int(targets[i]) == y]
        expected[y] = _step(bank[y], sum(members) / len(members), 0.4)
    torch.testing.assert_close(mem.bank, expected, rtol=0, atol=1e-12)


# --- SCL's top-k (Eq. 6) ------------------------------------------------------------------


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
    mem = TopKClusterMemory(5, momentum=0.2, k=k)
    mem.reset(bank)
    mem.update(x, targets)
    torch.testing.assert_close(mem.bank, reference_topk(bank, x, targets, k, 0.2))


def test_update_order_matters_and_is_hardest_first():
    bank = torch.tensor([[1.0, 0.0]])
    x = torch.tensor([[0.0, 1.0], [0.6, 0.8], [1.0, 0.0]])  # sims 0, 0.6, 1
    mem = TopKClusterMemory(2, momentum=0.5, k=2)
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
    sel = build_cluster_memory("average", 3, 0.2)  # was SelectiveClusterMemory(policy="average")
    ref = MeanClusterMemory(3, momentum=0.2)
    scl = build_cluster_memory("average", 3, 0.2)
    for mem in (sel, ref, scl):
        mem.reset(bank)
    sel.update(x, targets)
    ref.update(x, targets)
    scl.update_selected(x, targets, *scl.select(x, targets))  # SCL's path
    torch.testing.assert_close(sel.bank, ref.bank)
    torch.testing.assert_close(sel.bank[2], bank[2])  # absent cluster untouched
    torch.testing.assert_close(scl.bank, ref.bank, rtol=0, atol=0)


def test_selection_applied_later_equals_a_direct_update():
    g = torch.Generator().manual_seed(9)
    bank = F.normalize(torch.randn(3, 4, generator=g), dim=1)
    x = torch.randn(9, 4, generator=g)
    targets = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2])
    a = TopKClusterMemory(4, k=2)
    b = TopKClusterMemory(4, k=2)
    a.reset(bank)
    b.reset(bank)
    pos, rank = a.select(x, targets)
    a.update_selected(x, targets, pos, rank)
    b.update(x, targets)
    torch.testing.assert_close(a.bank, b.bank)


def test_hard_is_topk_with_k_one():
    bank = _unit(5, D, seed=14)
    x = _unit(12, D, seed=15)
    targets = torch.tensor([3, 0, 3, 3, 1, 0, 3, 1, 1, 3, 0, 3])
    hard = _memory(HardClusterMemory, bank, 0.1)
    top1 = TopKClusterMemory(D, 0.1, k=1).double()
    top1.reset(bank)
    hard.update(x, targets)
    top1.update(x, targets)
    assert hard.k == 1
    torch.testing.assert_close(hard.bank, top1.bank, rtol=0, atol=0)


def test_random_select_with_a_generator_is_the_draw_update_selected_applies():
    bank = _unit(3, D, seed=16)
    x = _unit(9, D, seed=17)
    targets = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2])
    mem = _memory(RandomClusterMemory, bank, 0.5)
    pos, rank = mem.select(x, targets, torch.Generator().manual_seed(3))
    again, _ = mem.select(x, targets, torch.Generator().manual_seed(3))
    assert torch.equal(pos, again) and (rank == 0).all()
    assert sorted(targets[pos].tolist()) == [0, 1, 2]
    mem.update_selected(x, targets, pos, rank)
    expected = bank.clone()
    for i in pos.tolist():
        expected[targets[i]] = _step(bank[targets[i]], x[i], 0.5)
    torch.testing.assert_close(mem.bank, expected, rtol=0, atol=1e-12)


# --- registry and factory -----------------------------------------------------------------


def test_build_cluster_memory():
    assert type(build_cluster_memory("momentum", 4, 0.1)) is MomentumClusterMemory
    assert type(build_cluster_memory("hard", 4)) is HardClusterMemory
    mem = build_cluster_memory("mean", 4, 0.3)
    assert type(mem) is MeanClusterMemory and mem.momentum == 0.3 and mem.num_features == 4
    with pytest.raises(
        ValueError, match=r"unknown memory 'median'; available: hard, mean, momentum"
    ):
        build_cluster_memory("median", 4)


def test_registry_names_options_and_errors():
    assert list_memories() == ["hard", "mean", "momentum", "random", "topk"]
    assert MEMORIES.get("average") is MeanClusterMemory and "average" not in list_memories()
    topk = build_cluster_memory("topk", 4, 0.2, k=3)
    assert type(topk) is TopKClusterMemory and topk.k == 3 and topk.momentum == 0.2
    assert type(build_cluster_memory("random", 4)) is RandomClusterMemory
    with pytest.raises(
        ValueError, match=r"memory 'random' takes no option \['k'\] \(options: none\)"
    ):
        build_cluster_memory("random", 4, 0.2, k=2)
    with pytest.raises(ValueError, match=r"memory 'mean' takes no option \['k'\]"):
        build_cluster_memory("average", 4, 0.2, k=2)
    with pytest.raises(UnknownNameError, match="available: hard, mean, momentum, random, topk"):
        build_cluster_memory("hardest", 4)  # was SelectiveClusterMemory(4, policy="hardest")


def test_bad_settings():
    with pytest.raises(ValueError, match="unknown memory"):
        build_cluster_memory("hardest", 4)
    with pytest.raises(ValueError, match="k must"):
        TopKClusterMemory(4, k=0)


@pytest.mark.parametrize("name", list_memories())
def test_every_policy_moves_only_its_batch_clusters_without_grad(name):
    bank = _unit(6, 3, seed=20)
    mem = build_cluster_memory(name, 3, 0.5).double()
    mem.reset(bank)
    x = torch.randn(8, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(21))
    x.requires_grad_(True)
    targets = torch.tensor([0, 0, 2, 2, 2, 4, 4, 0])
    cluster_nce(x, targets, mem.bank).backward()  # a loss reads the bank ...
    assert x.grad is not None and mem.bank.grad is None and not mem.bank.requires_grad
    positions, ranks = mem.select(x, targets, torch.Generator().manual_seed(0))
    assert sorted(set(targets[positions].tolist())) == [0, 2, 4]
    assert ranks.tolist() == sorted(ranks.tolist()) and int(ranks.min()) == 0
    torch.manual_seed(0)
    mem.update(x, targets)  # ... and only update writes it, under no_grad
    assert not mem.bank.requires_grad and mem.bank.grad_fn is None
    moved = (mem.bank != bank).any(dim=1).nonzero().flatten().tolist()
    assert moved == [0, 2, 4]
    torch.testing.assert_close(mem.bank.norm(dim=1), torch.ones(6, dtype=torch.float64))
    again = build_cluster_memory(name, 3, 0.5).double()
    again.reset(bank)
    torch.manual_seed(0)
    again.update_selected(x, targets, *again.select(x, targets))  # same draw, same bank
    torch.testing.assert_close(again.bank, mem.bank, rtol=0, atol=0)
    mem.reset(bank[:2])
    assert mem.num_clusters == 2
    with pytest.raises(AttributeError, match="read-only"):
        mem.bank = bank


def test_a_callers_ranking_is_applied_lowest_first():
    # CSA+HPS ranks by its own scores (replaces the former update_lowest)
    bank = torch.tensor([[1.0, 0.0]])
    x = torch.tensor([[0.0, 1.0], [0.6, 0.8], [1.0, 0.0]])
    targets = torch.zeros(3, dtype=torch.long)
    mem = HardClusterMemory(2, momentum=0.5)
    mem.reset(bank)
    chosen = least_similar_per_cluster(torch.tensor([0.5, 0.1, 0.9]), targets, 2)
    mem.update_selected(x, targets, *chosen)
    want = F.normalize(0.5 * bank[0] + 0.5 * x[1], dim=0)  # score 0.1 first ...
    want = F.normalize(0.5 * want + 0.5 * x[0], dim=0)  # ... then 0.5
    torch.testing.assert_close(mem.bank[0], want)
