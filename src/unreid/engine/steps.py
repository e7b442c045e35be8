"""One epoch of optimisation steps: forward, named losses, step, then the memory update.

The memory update comes after `optimizer.step()` and reads detached
features, so the loss always saw the bank as it was before this batch, as
the reference implementations' in-backward updates do.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from tqdm import tqdm

from unreid.engine.setup import TrainingRun
from unreid.methods import Batch
from unreid.models.dsbn import source_rows


def train_one_epoch(
    run: TrainingRun,
    steps: Iterable[tuple[torch.Tensor, torch.Tensor, int]],
    num_steps: int,
    labels: torch.Tensor,
    cameras: torch.Tensor,
    device: torch.device,
    desc: str,
    progress: bool,
) -> dict[str, float]:
    """One pass over `steps` of (images, indexes, source_count); labels/cameras by index.

    Returns the mean of every named loss term over the epoch.
    """
    model, method, optimizer = run.model, run.method, run.optimizer
    model.train()
    method.train()
    totals: dict[str, float] = {}
    bar = tqdm(steps, total=num_steps, desc=desc, leave=False, disable=not progress)
    for images, indexes, source_count in bar:
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
        loss = sum(losses.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        batch.features = batch.features.detach()
        method.update_memories(batch)  # explicit, after the step: the loss saw the old bank
        for name, value in losses.items():
            totals[name] = totals.get(name, 0.0) + value.item()
        bar.set_postfix(loss=f"{loss.item():.3f}")
    return {name: total / num_steps for name, total in totals.items()}
