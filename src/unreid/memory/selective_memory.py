"""SCL's cluster memory: rows move towards a *selection* of each cluster's instances.

Policies (Table 3 of "Mind your clever neighbours"):

* ``"topk"`` (SCL, Eq. 6): per cluster in the batch, its k least similar
  instances to the row (ranked once, against the row before this batch's
  update), applied one after the other, hardest first:
  M <- eta * M + (1 - eta) * q_top_i, renormalised after each step;
* ``"random"``: one random instance per cluster, one momentum step;
* ``"average"``: one momentum step towards the mean of the cluster's
  instances (the policy of "SCL off").

``eta`` is the weight of the old row, as in ``cluster_memory.py``; the paper's
implementation details give eta = 0.2 (its sensitivity study settles on 0.1).

The selection is exposed (``select``) because the selective loss (Eq. 7) is
computed on the same instances; ``update_selected`` applies a selection made
earlier (the random policy must use the draw the loss saw).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from unreid.memory.cluster_memory import ClusterMemory
from unreid.memory.selection import least_similar_per_cluster, random_per_cluster

UPDATE_POLICIES = ("topk", "random", "average")


class SelectiveClusterMemory(ClusterMemory):
    def __init__(
        self, num_features: int, momentum: float = 0.2, policy: str = "topk", k: int = 2
    ) -> None:
        super().__init__(num_features, momentum)
        if policy not in UPDATE_POLICIES:
            raise ValueError(f"policy must be one of {UPDATE_POLICIES}, found {policy!r}")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive int, found {k!r}")
        self.policy = policy
        self.k = k

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, policy={self.policy}, k={self.k}"

    @torch.no_grad()
    def select(
        self, x: Tensor, targets: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """``(positions, ranks)`` of the instances this policy uses, by rank then cluster.

        ``"average"`` selects every instance (rank = its order in the cluster).
        """
        self._check_features(x, "x")
        targets = self._check_targets(targets, x.shape[0])
        if self.policy == "random":
            return random_per_cluster(targets, 1, generator)
        if self.policy == "average":
            return least_similar_per_cluster(
                torch.arange(len(targets), dtype=torch.float32, device=targets.device),
                targets,
                max(1, len(targets)),
            )
        sims = (F.normalize(x.detach().to(self.bank.dtype), dim=1) * self.bank[targets]).sum(1)
        return least_similar_per_cluster(sims, targets, self.k)

    @torch.no_grad()
    def update_selected(self, x: Tensor, targets: Tensor, positions: Tensor, ranks: Tensor) -> None:
        """Apply a selection from ``select`` (made against the current bank)."""
        self._check_features(x, "x")
        targets = self._check_targets(targets, x.shape[0])
        if positions.numel() == 0:
            return
        x = F.normalize(x.detach().to(self.bank.dtype), dim=1)
        if self.policy == "average":
            rows = targets[positions]
            sums = torch.zeros(self.num_clusters, x.shape[1], dtype=x.dtype, device=x.device)
            sums.index_add_(0, rows, x[positions])
            counts = torch.bincount(rows, minlength=self.num_clusters)
            clusters = counts.nonzero().flatten()
            self._momentum_step(clusters, sums[clusters] / counts[clusters, None].to(x.dtype))
            return
        self._steps_by_rank(x, targets, positions, ranks)

    def _steps_by_rank(self, x: Tensor, targets: Tensor, positions: Tensor, ranks: Tensor) -> None:
        """One momentum step per rank, rank 0 first; clusters are distinct within a rank."""
        for r in range(int(ranks.max()) + 1 if ranks.numel() else 0):
            step = positions[ranks == r]
            self._momentum_step(targets[step], x[step])

    @torch.no_grad()
    def update_lowest(self, x: Tensor, targets: Tensor, scores: Tensor, k: int = 1) -> None:
        """Momentum steps from the k lowest-``scores`` instances of each cluster, lowest first.

        The ranking comes from outside (e.g. CSA+HPS ranks by negated dispersion).
        """
        self._check_features(x, "x")
        targets = self._check_targets(targets, x.shape[0])
        if scores.shape != targets.shape:
            raise ValueError(
                f"scores must be (B,) = {tuple(targets.shape)}, found {tuple(scores.shape)}"
            )
        positions, ranks = least_similar_per_cluster(scores.to(targets.device), targets, k)
        self._steps_by_rank(
            F.normalize(x.detach().to(self.bank.dtype), dim=1), targets, positions, ranks
        )

    def _apply_update(self, x: Tensor, targets: Tensor) -> None:
        positions, ranks = self.select(x, targets)
        self.update_selected(x, targets, positions, ranks)
