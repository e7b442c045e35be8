"""One epoch of optimisation steps: forward, named losses, step, then the memory update.

The memory update comes after `optimizer.step()` and reads detached
features, so the loss always saw the bank as it was before this batch, as
the reference implementations' in-backward updates do.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from tqdm import tqdm

from unreid.engine.setup import TrainingRun
from unreid.faults import kill_point
from unreid.methods import Batch
from unreid.models.dsbn import source_rows


class TrainingDiverged(RuntimeError):
    """The loss stopped being a finite number; raised before the step is taken."""


def train_one_epoch(
    run: TrainingRun,
    steps: Iterable[tuple[torch.Tensor, torch.Tensor, int]],
    num_steps: int,
    labels: torch.Tensor,
    cameras: torch.Tensor,
    device: torch.device,
    epoch: int,
    progress: bool,
) -> dict[str, float]:
    """One pass over `steps` of (images, indexes, source_count); labels/cameras by index.

    Returns the mean of every named loss term over the epoch. A non-finite loss
    stops the epoch before its step, so no NaN reaches the weights, the memories or
    a checkpoint.
    """
    desc = f"train {epoch + 1}"
    model, method, optimizer = run.model, run.method, run.optimizer
    model.train()
    method.train()
    totals: dict[str, float] = {}
    bar = tqdm(steps, total=num_steps, desc=desc, leave=False, disable=not progress)
    for iteration, (images, indexes, source_count) in enumerate(bar, start=1):
        with source_rows(model, source_count):  # domain-specific BN, if any
            features = model(images.to(device, non_blocking=True))
        batch = Batch(
            features=features,
            targets=labels[indexes].to(device),
            cameras=cameras[indexes].to(device),
            indexes=indexes.to(device),
            source_count=source_count,
        )
        losses = method.losses(batch)
        values = {name: value.item() for name, value in losses.items()}
        if not all(math.isfinite(v) for v in values.values()):
            terms = ", ".join(f"{k}={v:.4g}" for k, v in values.items())
            raise TrainingDiverged(
                f"epoch {epoch + 1}, iteration {iteration}: the loss is not finite ({terms}); "
                "stopped before this step, nothing of this epoch was saved and the last "
                "checkpoint is intact. Lower train.lr or check the data."
            )
        loss = sum(losses.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        kill_point("step")
        batch.features = batch.features.detach()
        method.update_memories(batch)  # explicit, after the step: the loss saw the old bank
        for name, value in values.items():
            totals[name] = totals.get(name, 0.0) + value
        bar.set_postfix(loss=f"{sum(values.values()):.3f}")
    return {name: total / num_steps for name, total in totals.items()}
