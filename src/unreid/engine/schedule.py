"""The learning-rate schedule: step decay per epoch, optionally after a linear warm-up.

The loop steps the schedule once per epoch (`TrainingRun.next_epoch`), so "epoch"
below is the 0-based epoch about to be trained. Epoch `e` trains at

    lr(e) = train.lr × w(e) × train.gamma ** (e // train.step_size)
    w(e)  = f + (1 − f) · e / W   for e < W,   1 afterwards

with W = `train.warmup_epochs` and f = `train.warmup_factor`. This is CAP's
`WarmupMultiStepLR` (Terminator8758/CAP-master, train_cap.py: linear warm-up,
factor 0.01 over 10 epochs, milestones 20 and 40, gamma 0.1, stepped with the
epoch number at each epoch's start): its milestones 20 and 40 of a 50-epoch run
are a step decay every 20 epochs. The warm-up multiplies the decay rather than
replacing it, as there, so a warm-up longer than `step_size` still decays.

With the warm-up off (W = 0) the schedule is torch's `StepLR` itself, so runs
without a warm-up keep the learning rates, and the checkpoints, they always had.
Both schedules checkpoint through `state_dict()`: the warm-up is a closed form of
the epoch count, so a restored schedule continues exactly where it stopped.
"""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, StepLR

from unreid.settings import TrainConfig

__all__ = ["build_scheduler", "lr_factor"]


def lr_factor(
    epoch: int, step_size: int, gamma: float, warmup_epochs: int = 0, warmup_factor: float = 1.0
) -> float:
    """The multiple of the base learning rate that `epoch` (0-based) trains at."""
    decay = gamma ** (epoch // step_size)
    if epoch >= warmup_epochs:
        return decay
    alpha = epoch / warmup_epochs
    return (warmup_factor * (1.0 - alpha) + alpha) * decay


def build_scheduler(optimizer: Optimizer, train_cfg: TrainConfig) -> LRScheduler:
    """The run's per-epoch schedule: `StepLR` without a warm-up, the warm-up × step otherwise."""
    t = train_cfg
    if t.warmup_epochs == 0:
        return StepLR(optimizer, t.step_size, t.gamma)
    step_size, gamma = t.step_size, t.gamma
    warmup_epochs, warmup_factor = t.warmup_epochs, t.warmup_factor

    # A closure, not a callable object: LambdaLR then saves no lambda state (`None`),
    # so the checkpoint holds only numbers and the settings come from the run's config.
    def factor(epoch: int) -> float:
        return lr_factor(epoch, step_size, gamma, warmup_epochs, warmup_factor)

    return LambdaLR(optimizer, factor)
