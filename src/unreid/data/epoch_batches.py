"""One epoch's training steps: P×K batches over the target, beside the source when adapting.

The sampler seeds are part of the result: target and source streams are seeded `seed` and
`seed + 1` and reseeded per epoch with `set_epoch`, so a resumed run replays the same
batches. Settings come as plain arguments, not a `Config`, so the data layer never imports
the config layer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from unreid.data.domain_batches import MixedDomainBatches, Step, single_domain
from unreid.data.samplers import PKSampler
from unreid.data.source_domain import SourceDomain

SOURCE_STREAM = 1
"""Offset added to `seed` for the source sampler, so the two domains draw independently."""


@dataclass(frozen=True)
class LoaderPlan:
    """How every P×K loader of a run draws and loads: the same for target and source."""

    num_instances: int  # K images per identity
    iters: int  # batches per epoch
    seed: int
    workers: int = 0
    pin_memory: bool = False
    # Under DDP: each global P×K batch cut to this rank's share of whole identities.
    split: Callable[[Iterable[list[int]]], Iterable[list[int]]] | None = None


def pk_loader(
    images: Dataset,
    labels: Sequence[int] | np.ndarray,
    cameras: torch.Tensor,
    batch_size: int,
    plan: LoaderPlan,
    epoch: int,
    stream: int = 0,
) -> DataLoader:
    """`plan.iters` P×K batches over `images` by `labels` (-1 never drawn)."""
    sampler = PKSampler(
        labels,
        cameras.tolist(),
        plan.num_instances,
        batch_size,
        plan.iters,
        seed=plan.seed + stream,
    )
    sampler.set_epoch(epoch)
    batches = plan.split(sampler) if plan.split is not None else sampler
    return DataLoader(
        images, batch_sampler=batches, num_workers=plan.workers, pin_memory=plan.pin_memory
    )


def epoch_batches(
    train_set: Dataset,
    labels: Sequence[int] | np.ndarray,
    cameras: torch.Tensor,
    source: SourceDomain | None,
    batch_size: int,
    plan: LoaderPlan,
    epoch: int,
) -> tuple[Iterable[Step], torch.Tensor, torch.Tensor]:
    """This epoch's steps, and the label and camera of every index they yield.

    `labels` are the target's cluster ids (-1 = outlier). Alone, P×K batches of
    `batch_size` over the clustered target images. Adapting domains, each step is a source
    P×K half (true ids) on a target half of `batch_size // 2`, indexed source first.
    """
    half = batch_size // 2 if source is not None else batch_size
    target = pk_loader(train_set, labels, cameras, half, plan, epoch)
    label_of = torch.tensor(labels, dtype=torch.long)
    if source is None:
        return single_domain(target), label_of, cameras
    source_loader = pk_loader(
        source.images, source.labels.numpy(), source.cameras, half, plan, epoch, SOURCE_STREAM
    )
    return (
        MixedDomainBatches(source_loader, target, len(source.samples)),
        torch.cat([source.labels, label_of]),
        torch.cat([source.cameras, cameras]),
    )
