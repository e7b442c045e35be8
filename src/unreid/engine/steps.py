"""One epoch of optimisation steps: forward, named losses, step, then the memory update.

The memory update comes after the optimizer step and reads detached
features, so the loss always saw the bank as it was before this batch, as
the reference implementations' in-backward updates do. Under DDP every rank
then gathers the whole step's features and targets, in the order one process
would hold them, so all ranks make the same update and their memories stay
identical. A multi-view method (ICE) gets batches of stacked views: the model
trains on the first, the others reach the method as `Batch.views`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable

import torch
from tqdm import tqdm

from unreid.data.device_augment import AugmentParams, DeviceAugment
from unreid.distributed import DistContext
from unreid.engine.setup import TrainingRun
from unreid.faults import kill_point
from unreid.methods import Batch
from unreid.models.bn_groups import bn_groups
from unreid.models.dsbn import source_rows
from unreid.models.vit import camera_ids
from unreid.precision import to_device


class TrainingDiverged(RuntimeError):
    """The loss stopped being a finite number; raised before the step is taken."""


def train_one_epoch(
    run: TrainingRun,
    steps: Iterable[tuple[torch.Tensor, torch.Tensor, int]],
    num_steps: int,
    labels: torch.Tensor,
    cameras: torch.Tensor,
    epoch: int,
    progress: bool,
    augment: DeviceAugment | None = None,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """One pass over `steps` of (images, indexes, source_count); labels/cameras by index.

    Returns the mean of every named loss term over the epoch (over all ranks). A
    non-finite loss stops the epoch before its step, so no NaN reaches the
    weights, the memories or a checkpoint. `augment` turns decoded uint8 batches
    into training batches (on the device when `generator` lives there).
    """
    model, method, optimizer, ctx = run.model, run.method, run.optimizer, run.ctx
    device = ctx.device
    model.train()
    method.train()
    totals: dict[str, float] = {}
    bar = tqdm(steps, total=num_steps, desc=f"train {epoch + 1}", leave=False, disable=not progress)
    groups = bn_groups(model, run.bn_group_size, run.bn_running_stats, run.num_instances)
    with groups:
        for iteration, (images, indexes, source_count) in enumerate(bar, start=1):
            if augment is not None:  # decoded uint8 batches, augmented where the generator is
                images = augmented(augment, images, generator, ctx, source_count)
            images, views = split_views(images)
            x = to_device(images, device, run.channels_last)
            # domain-specific BN and a transformer's camera embedding, where the model has them
            with source_rows(model, source_count), camera_ids(model, cameras[indexes]):
                features = run.precision.forward(run.runner, x)
            batch = Batch(
                features=features,
                targets=labels[indexes].to(device),
                cameras=cameras[indexes].to(device),
                indexes=indexes.to(device),
                source_count=source_count,
                views=tuple(to_device(v, device, run.channels_last) for v in views),
            )
            losses = method.losses(batch)
            values = ctx.mean_values({name: value.item() for name, value in losses.items()})
            if not all(math.isfinite(v) for v in values.values()):
                terms = ", ".join(f"{k}={v:.4g}" for k, v in values.items())
                raise TrainingDiverged(
                    f"epoch {epoch + 1}, iteration {iteration}: the loss is not finite ({terms}); "
                    "stopped before this step, nothing of this epoch was saved and the last "
                    "checkpoint is intact. Lower train.lr or check the data."
                )
            run.precision.backward_step(
                sum(losses.values()),
                optimizer,
                before_step=lambda: ctx.average_gradients(method.parameters()),
            )
            kill_point("step")
            # explicit, after the step (the loss saw the old bank), on the whole step's batch
            method.update_memories(gathered(run, batch))
            for name, value in values.items():
                totals[name] = totals.get(name, 0.0) + value
            bar.set_postfix(loss=f"{sum(values.values()):.3f}")
    return {name: total / num_steps for name, total in totals.items()}


def split_views(images: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """The batch the model trains on, and the method's extra views (`Method.views[1:]`).

    A multi-view loader (data/image_dataset.py `ViewsDataset`) stacks each image's
    views as (B, V, 3, H, W); a single-view batch (B, 3, H, W) passes as it is.
    """
    if images.dim() != 5:
        return images, ()
    return images[:, 0].contiguous(), tuple(v.contiguous() for v in images[:, 1:].unbind(1))


def augmented(
    augment: DeviceAugment,
    images: torch.Tensor,
    generator: torch.Generator,
    ctx: DistContext,
    source_count: int,
) -> torch.Tensor:
    """This rank's rows of the whole step's augmentation draws.

    Every rank draws the global batch's parameters from the same generator and
    applies its own rows (source rows of all ranks come first, as gathered), so
    the images each rank trains on are those one process would: DDP equals a
    single process here, augmentations included.
    """
    n, s, world, rank = images.shape[0], source_count, ctx.world_size, ctx.rank
    rows = torch.cat([rank * s + torch.arange(s), s * world + rank * (n - s) + torch.arange(n - s)])
    params = augment.draw(n * world, generator, generator.device)
    rows = rows.to(generator.device)
    mine = AugmentParams(*(getattr(params, f.name)[rows] for f in dataclasses.fields(params)))
    return augment.apply(images.to(generator.device), mine)


def gathered(run: TrainingRun, batch: Batch) -> Batch:
    """The step's batch as one process holds it: detached, every rank's rows in order.

    Alone, the batch itself (its `extras` kept for the update). Under DDP the
    rows of all ranks, with the method's per-row extras (`Method.row_extras`)
    gathered alongside; other extras are per-rank and dropped, so methods
    recompute what they need from the gathered rows.
    """
    if not run.ctx.distributed:
        batch.features = batch.features.detach()
        return batch
    keys = [k for k in run.method.row_extras if k in batch.extras]
    (x, y, cams, idx, *rows), sources = run.ctx.all_gather_batch(
        batch.features, batch.targets, batch.cameras, batch.indexes,
        *(batch.extras[k].detach() for k in keys), source_count=batch.source_count,
    )  # fmt: skip
    return Batch(x, y, cams, idx, extras=dict(zip(keys, rows, strict=True)), source_count=sources)
