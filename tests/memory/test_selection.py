"""Which instances of each cluster a selection keeps, and in which order."""

from __future__ import annotations

import pytest
import torch

from unreid.memory.selection import (
    every_instance,
    group_by_target,
    least_similar_per_cluster,
    random_per_cluster,
    rank_within_clusters,
)


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


def test_every_instance_ranks_by_batch_position_then_orders_by_rank_and_cluster():
    targets = torch.tensor([2, 0, 2, 1, 0, 2])
    pos, rank = every_instance(targets)
    # rank 0: first of clusters 0, 1, 2; rank 1: second of 0 and 2; rank 2: third of 2
    assert pos.tolist() == [1, 3, 0, 4, 2, 5]
    assert rank.tolist() == [0, 0, 0, 1, 1, 2]
    assert rank_within_clusters(torch.arange(6), targets).tolist() == [0, 0, 1, 0, 1, 2]
    empty = torch.zeros(0, dtype=torch.long)
    assert [t.numel() for t in every_instance(empty)] == [0, 0]


def test_group_by_target_pads_each_cluster_in_batch_order():
    index, mask, ids = group_by_target(torch.tensor([3, 1, 3, 3, 1]))
    assert ids.tolist() == [1, 3]
    assert index.tolist() == [[1, 4, 0], [0, 2, 3]]
    assert mask.tolist() == [[True, True, False], [True, True, True]]


def test_bad_k():
    # from the former test_selective_memory.py::test_bad_settings
    with pytest.raises(ValueError, match="k must"):
        least_similar_per_cluster(torch.zeros(2), torch.zeros(2, dtype=torch.long), 0)
    with pytest.raises(ValueError, match="k must"):
        random_per_cluster(torch.zeros(2, dtype=torch.long), 0)
