"""Training batches for one domain, or two side by side (domain adaptation).

Both yield `(images, indexes, source_count)`. With a source domain, each step
stacks a source P×K batch on top of a target one and indexes the pair as one
list, source samples first then target samples (target index + N_s), so the
engine can look labels and cameras up in one concatenated table.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch

__all__ = ["MixedDomainBatches", "Step", "single_domain"]

Step = tuple[torch.Tensor, torch.Tensor, int]
"""(images, indexes, source_count): the first `source_count` rows are source images."""


def single_domain(loader: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> Iterator[Step]:
    for images, indexes in loader:
        yield images, indexes, 0


class MixedDomainBatches:
    """Zip a source and a target loader of (images, indexes) into mixed steps."""

    def __init__(self, source: Iterable, target: Iterable, source_size: int) -> None:
        self.source, self.target, self.source_size = source, target, source_size

    def __len__(self) -> int:
        return min(len(self.source), len(self.target))  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Step]:
        for (s_img, s_idx), (t_img, t_idx) in zip(self.source, self.target, strict=False):
            yield (
                torch.cat([s_img, t_img]),
                torch.cat([s_idx, t_idx + self.source_size]),
                len(s_idx),
            )
