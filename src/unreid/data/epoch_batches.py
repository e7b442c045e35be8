"""One epoch's training steps: P×K batches over the target, beside the source when adapting.

The sampler seeds are part of the result: target and source streams are seeded `seed` and
`seed + 1` and reseeded per epoch with `set_epoch`, so a resumed run replays the same
batches. Settings come as plain arguments, not a `Config`, so the data layer never imports
the config layer.

The plan names the batch sampler (`train.sampler`: P identities or P camera-aware proxies,
× K) and the epoch length (`train.epoch_length`): a fixed `train.iters`, or one pass over
this epoch's clustered images in steps of the batch (CAP's epoch), recomputed every epoch
since the clustering decides how many images train. Adapting domains, one pass is over the
target's clustered images at the target's half of the batch, and the source draws as many
batches: the target is the data the epoch is about.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from unreid.data.camera_sampler import CameraPKSampler
from unreid.data.domain_batches import MixedDomainBatches, Step, single_domain
from unreid.data.proxy_sampler import ProxyBalancedSampler
from unreid.data.samplers import PKSampler
from unreid.data.source_domain import SourceDomain
from unreid.data.stream_sampler import StreamPKSampler

SOURCE_STREAM = 1
"""Offset added to `seed` for the source sampler, so the two domains draw independently."""

SAMPLERS: dict[str, type[PKSampler] | type[ProxyBalancedSampler]] = {
    "pk": PKSampler,
    "pk_stream": StreamPKSampler,
    "proxy_balanced": ProxyBalancedSampler,
    "pk_cameras": CameraPKSampler,
}
"""`train.sampler` names -> batch samplers (same arguments, same determinism contract)."""


@dataclass(frozen=True)
class LoaderPlan:
    """How every P×K loader of a run draws and loads: the same for target and source."""

    num_instances: int  # K images per identity (or proxy)
    iters: int  # batches per epoch, with epoch_length="iters"
    seed: int
    workers: int = 0
    pin_memory: bool = False
    # Under DDP: each global P×K batch cut to this rank's share of whole identities.
    split: Callable[[Iterable[list[int]]], Iterable[list[int]]] | None = None
    sampler: str = "pk"  # a key of SAMPLERS
    epoch_length: str = "iters"  # "iters" or "one_pass"

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ValueError(
                f"sampler must be one of {', '.join(SAMPLERS)}, found {self.sampler!r}"
            )
        if self.epoch_length not in ("iters", "one_pass"):
            raise ValueError(
                f"epoch_length must be 'iters' or 'one_pass', found {self.epoch_length!r}"
            )

    def steps(self, labels: Sequence[int] | np.ndarray, batch_size: int) -> int:
        """Batches this epoch: `iters`, or one pass over the clustered images (>= 1).

        One pass is CAP's epoch (train_cap.py: `int(len(clustered samples) / batch_size)`);
        with fewer clustered images than a batch, still one step.
        """
        if self.epoch_length == "iters":
            return self.iters
        clustered = int(np.count_nonzero(np.asarray(labels) >= 0))
        return max(1, clustered // batch_size)


class EpochSteps(Protocol):
    """An epoch's steps, with their number (what the loss averages divide by)."""

    def __iter__(self) -> Iterator[Step]: ...

    def __len__(self) -> int: ...


class TargetSteps:
    """One domain's loader as steps `(images, indexes, 0)`, sized by its batch sampler."""

    def __init__(self, loader: DataLoader) -> None:
        self.loader = loader

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Step]:
        return single_domain(self.loader)


def pk_loader(
    images: Dataset,
    labels: Sequence[int] | np.ndarray,
    cameras: torch.Tensor,
    batch_size: int,
    plan: LoaderPlan,
    epoch: int,
    stream: int = 0,
    iterations: int | None = None,
) -> DataLoader:
    """P×K batches over `images` by `labels` (-1 never drawn), drawn by `plan.sampler`.

    `iterations` batches; by default as many as `plan.steps` gives for these labels.
    """
    sampler = SAMPLERS[plan.sampler](
        labels,
        cameras.tolist(),
        plan.num_instances,
        batch_size,
        plan.steps(labels, batch_size) if iterations is None else iterations,
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
) -> tuple[EpochSteps, torch.Tensor, torch.Tensor]:
    """This epoch's steps (`len()` of them), and the label and camera of every index.

    `labels` are the target's cluster ids (-1 = outlier). Alone, P×K batches of
    `batch_size` over the clustered target images. Adapting domains, each step is a source
    P×K half (true ids) on a target half of `batch_size // 2`, indexed source first; the
    source draws as many batches as the target (`plan.steps` of the target's labels).
    """
    half = batch_size // 2 if source is not None else batch_size
    count = plan.steps(labels, half)
    target = pk_loader(train_set, labels, cameras, half, plan, epoch, iterations=count)
    label_of = torch.tensor(labels, dtype=torch.long)
    if source is None:
        return TargetSteps(target), label_of, cameras
    source_loader = pk_loader(
        source.images, source.labels.numpy(), source.cameras, half, plan, epoch,
        SOURCE_STREAM, count,
    )  # fmt: skip
    return (
        MixedDomainBatches(source_loader, target, len(source.samples)),
        torch.cat([source.labels, label_of]),
        torch.cat([source.cameras, cameras]),
    )
