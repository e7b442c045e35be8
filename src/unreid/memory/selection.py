"""Which batch instances of each cluster an update (and a selective loss) uses.

A selection is `(positions, ranks)`: batch positions, each with its rank
among the chosen instances of its cluster, ordered by rank then cluster, so a
memory can apply rank 0 of every cluster at once, then rank 1, and so on.

SCL ("Mind your clever neighbours", Eq. 6-7) ranks the instances of every
cluster in the batch by their similarity to the cluster's memory row and keeps
the top-k *least* similar; those update the row one after the other, hardest
first, and are the instances the selective loss is computed on.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "every_instance",
    "group_by_target",
    "least_similar_per_cluster",
    "random_per_cluster",
    "rank_within_clusters",
]


def rank_within_clusters(keys: Tensor, targets: Tensor) -> Tensor:
    """(B,) rank of each instance among its cluster's, by ``keys`` ascending.

    Ties go to the earlier batch position: both sorts are stable.
    """
    by_key = torch.sort(keys, stable=True).indices
    order = by_key[torch.sort(targets[by_key], stable=True).indices]  # cluster, key, position
    grouped = targets[order]
    starts = torch.ones_like(grouped, dtype=torch.bool)
    starts[1:] = grouped[1:] != grouped[:-1]
    positions = torch.arange(len(order), device=order.device)
    group_start = torch.cummax(torch.where(starts, positions, 0), dim=0).values
    rank = torch.empty_like(order)
    rank[order] = positions - group_start
    return rank


def _ordered(rank: Tensor, targets: Tensor, keep: int) -> tuple[Tensor, Tensor]:
    """Positions with rank < keep, sorted by (rank, cluster): one update step per rank."""
    chosen = (rank < keep).nonzero().flatten()
    r, t = rank[chosen], targets[chosen]
    order = torch.sort(t, stable=True).indices
    order = order[torch.sort(r[order], stable=True).indices]
    return chosen[order], r[order]


def least_similar_per_cluster(sims: Tensor, targets: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The k least similar instances of every cluster in the batch (fewer if it has fewer).

    Args:
        sims: (B,) similarity of each instance to its own cluster's memory row.
        targets: (B,) cluster ids.
        k: instances kept per cluster.

    Returns:
        ``(positions, ranks)``: batch positions of the kept instances and their
        rank in their cluster (0 = least similar), ordered by rank, then cluster.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, found {k!r}")
    if sims.shape != targets.shape or sims.dim() != 1:
        raise ValueError(
            f"sims and targets must both be (B,), found {tuple(sims.shape)} and "
            f"{tuple(targets.shape)}"
        )
    return _ordered(rank_within_clusters(sims, targets), targets, k)


def random_per_cluster(
    targets: Tensor, k: int = 1, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """k uniformly random instances of every cluster in the batch (Table 3's "random")."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, found {k!r}")
    keys = torch.rand(targets.shape, generator=generator, device="cpu").to(targets.device)
    return _ordered(rank_within_clusters(keys, targets), targets, k)


def every_instance(targets: Tensor) -> tuple[Tensor, Tensor]:
    """Every instance, ranked by batch position within its cluster (0 = first in the batch)."""
    positions = torch.arange(len(targets), device=targets.device)
    return _ordered(rank_within_clusters(positions, targets), targets, len(targets))


def group_by_target(targets: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Batch positions grouped by cluster, padded: ``(index (G, n), mask (G, n), ids (G,))``.

    Group g holds the positions of cluster ``ids[g]`` in batch order; ``mask``
    marks the real entries (padding points at position 0).
    """
    ids, counts = torch.unique(targets, return_counts=True)
    width = int(counts.max()) if counts.numel() else 0
    rank = rank_within_clusters(torch.arange(len(targets), device=targets.device), targets)
    group = torch.searchsorted(ids, targets)
    index = torch.zeros(len(ids), width, dtype=torch.long, device=targets.device)
    mask = torch.zeros(len(ids), width, dtype=torch.bool, device=targets.device)
    index[group, rank] = torch.arange(len(targets), device=targets.device)
    mask[group, rank] = True
    return index, mask, ids
