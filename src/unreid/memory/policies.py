"""Cluster-memory update policies, one class each, and the registry that names them.

* ``momentum`` (Cluster Contrast default): every instance, in batch order.
* ``topk`` (SCL, Eq. 6 of "Mind your clever neighbours"): the k instances of
  each cluster least similar to its row, ranked once against the row before
  the update and applied hardest first.
* ``hard`` (Cluster Contrast's hard variant, HHCL's released code): ``topk``
  with k = 1, the least similar instance, the first one in batch order on ties.
* ``random`` (SCL's Table 3): one uniformly drawn instance per cluster.
* ``mean`` (HHCL Eq. 4; ``average``, "SCL off", is the same rule): one step
  towards the plain mean of the cluster's instances.

`build_cluster_memory` is the config-facing constructor; `list_memories` is
what the CLI prints and the registry-wide tests iterate over.
"""

from __future__ import annotations

import torch
from torch import Tensor

from unreid.memory.cluster_memory import ClusterMemory
from unreid.memory.selection import every_instance, least_similar_per_cluster, random_per_cluster
from unreid.registry import Registry

__all__ = [
    "MEMORIES",
    "HardClusterMemory",
    "MeanClusterMemory",
    "MomentumClusterMemory",
    "RandomClusterMemory",
    "TopKClusterMemory",
    "build_cluster_memory",
    "list_memories",
]

MEMORIES: Registry[type[ClusterMemory]] = Registry("memory")


def list_memories() -> list[str]:
    """Registered update-policy names, sorted (aliases such as ``average`` left out)."""
    return MEMORIES.names()


def build_cluster_memory(
    policy: str, num_features: int, momentum: float = 0.1, **options: object
) -> ClusterMemory:
    """Config-facing constructor: the policy name picks the class, `options` its settings.

    An option the policy does not take is an error rather than ignored, so a
    setting such as ``k`` cannot silently do nothing.
    """
    cls = MEMORIES.get(policy)
    unknown = sorted(set(options) - set(cls.options))
    if unknown:
        accepted = ", ".join(cls.options) or "none"
        raise ValueError(
            f"memory {MEMORIES.canonical(policy)!r} takes no option {unknown} (options: {accepted})"
        )
    return cls(num_features, momentum, **options)


@MEMORIES.register("momentum")
class MomentumClusterMemory(ClusterMemory):
    """Every instance updates its row once, in batch order (the reference default).

    Later instances of a cluster see the rows already moved by earlier ones, so
    with `momentum = 0.1` the last instance of each cluster dominates. The loop
    runs over the position within a cluster and is vectorised across clusters,
    which keeps the per-cluster sequence exact.
    """

    def _select(
        self, x: Tensor, targets: Tensor, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor]:
        return every_instance(targets)


@MEMORIES.register("topk")
class TopKClusterMemory(ClusterMemory):
    """Per cluster in the batch, its k least similar instances, hardest first.

    Similarity is the cosine to the row before this batch's update, ranked
    once; ties go to the earlier batch position. Pulling towards the hard
    positives keeps the row from collapsing onto the easy, camera-biased
    majority of the cluster.
    """

    options = ("k",)

    def __init__(self, num_features: int, momentum: float = 0.1, k: int = 2) -> None:
        super().__init__(num_features, momentum)
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive int, found {k!r}")
        self.k = k

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, k={self.k}"

    def _select(
        self, x: Tensor, targets: Tensor, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor]:
        sims = (x * self.bank[targets]).sum(dim=1)
        return least_similar_per_cluster(sims, targets, self.k)


@MEMORIES.register("hard")
class HardClusterMemory(TopKClusterMemory):
    """Per cluster in the batch, only its least similar instance updates the row."""

    options = ()

    def __init__(self, num_features: int, momentum: float = 0.1) -> None:
        super().__init__(num_features, momentum, k=1)


@MEMORIES.register("random")
class RandomClusterMemory(ClusterMemory):
    """Per cluster in the batch, one uniformly drawn instance updates the row.

    `update` draws from the global RNG; `select(..., generator=...)` draws from
    a given one, and `update_selected` then applies that same draw.
    """

    def _select(
        self, x: Tensor, targets: Tensor, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor]:
        return random_per_cluster(targets, 1, generator)


@MEMORIES.register("mean", aliases=("average",))
class MeanClusterMemory(ClusterMemory):
    """Per cluster in the batch, one update towards the plain mean of its selected instances.

    The mean of unit vectors is not renormalised before mixing (as HHCL's mean
    centroids), so a spread-out cluster moves its row less than a tight one.
    `select` picks every instance, so `update` uses the whole batch.
    """

    def _select(
        self, x: Tensor, targets: Tensor, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor]:
        return every_instance(targets)

    def _apply_selection(
        self, x: Tensor, targets: Tensor, positions: Tensor, ranks: Tensor
    ) -> None:
        rows = targets[positions]
        sums = torch.zeros(self.num_clusters, x.shape[1], dtype=x.dtype, device=x.device)
        sums.index_add_(0, rows, x[positions])
        counts = torch.bincount(rows, minlength=self.num_clusters)
        clusters = counts.nonzero().flatten()
        self._momentum_step(clusters, sums[clusters] / counts[clusters].unsqueeze(1).to(x.dtype))
