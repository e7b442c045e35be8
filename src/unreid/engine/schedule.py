"""The learning-rate schedule: step or cosine decay per epoch, optionally after a linear warm-up.

The loop steps the schedule once per epoch (`TrainingRun.next_epoch`), so "epoch"
below is the 0-based epoch about to be trained. Epoch `e` trains at

    lr(e) = train.lr × w(e) × d(e)
    w(e)  = f + (1 − f) · e / W                        for e < W,   1 afterwards
    d(e)  = train.gamma ** (e // train.step_size)                   (scheduler=step)
    d(e)  = m + (1 − m) · (1 + cos(π · min(e, E) / E)) / 2          (scheduler=cosine)

with W = `train.warmup_epochs`, f = `train.warmup_factor`, E = `train.epochs` and
m = `train.min_lr_factor`. The warm-up and step decay are CAP's `WarmupMultiStepLR`
(Terminator8758/CAP-master, train_cap.py: linear warm-up, factor 0.01 over 10
epochs, milestones 20 and 40, gamma 0.1, stepped with the epoch number at each
epoch's start): its milestones 20 and 40 of a 50-epoch run are a step decay every
20 epochs. PCL-CLIP-USL (Trangle12/PCL-CLIP-USL, clip_cc/utils/prepare_scheduler.py)
uses that same schedule with SGD. The warm-up multiplies the decay rather than
replacing it, as there, so a warm-up longer than `step_size` still decays.

The cosine runs on the same clock from epoch 0 (the warm-up overlaps its start)
and reaches m at e = E, one step after the last epoch; epoch E − 1 trains just
above it. TransReID-SSL's fine-tuning schedule (damo-cv/TransReID-SSL,
transreid_pytorch/solver/scheduler_factory.py and cosine_lr.py, timm's
`CosineLRScheduler`: lr_min 0.002 × lr, 20 warm-up epochs from 0.01 × lr over 120,
stepped with the epoch number) is the same cosine after the warm-up, but its
warm-up replaces the cosine instead of multiplying it: a warm-up epoch there
trains at lr × w(e), here at lr × w(e) × d(e) (at most 1 − d(W − 1) lower, about
6 % at its epoch 19 of 120); multiplying keeps one rule for both decays. Its
unsupervised script (cluster-contrast-reid/examples/cluster_contrast_train_usl.py)
trains with SGD and StepLR(20, 0.1), no warm-up: scheduler=step here.

With the warm-up off and the step decay (the defaults) the schedule is torch's
`StepLR` itself, so those runs keep the learning rates, and the checkpoints, they
always had. Every schedule checkpoints through `state_dict()`: the factors are a
closed form of the epoch count, so a restored schedule continues exactly where it
stopped. The cosine's curve spans `train.epochs`, which `--resume` may change; its
checkpoint records that span and refuses to continue under another one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, StepLR

from unreid.errors import ConfigError
from unreid.settings import TrainConfig

__all__ = ["CosineLR", "build_scheduler", "cosine_factor", "lr_factor", "schedule_factor"]


def warmup_multiplier(epoch: int, warmup_epochs: int, warmup_factor: float) -> float:
    """w(e): the linear warm-up from `warmup_factor` to 1 over `warmup_epochs` epochs."""
    if epoch >= warmup_epochs:
        return 1.0
    alpha = epoch / warmup_epochs
    return warmup_factor * (1.0 - alpha) + alpha


def lr_factor(
    epoch: int, step_size: int, gamma: float, warmup_epochs: int = 0, warmup_factor: float = 1.0
) -> float:
    """The multiple of the base learning rate that `epoch` (0-based) trains at (step decay)."""
    decay = gamma ** (epoch // step_size)
    if epoch >= warmup_epochs:
        return decay
    return warmup_multiplier(epoch, warmup_epochs, warmup_factor) * decay


def cosine_factor(epoch: int, epochs: int, min_factor: float) -> float:
    """d(e) of the cosine: 1 at epoch 0, `min_factor` at `epochs` and after."""
    t = min(epoch, epochs) / epochs
    return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * t))


def schedule_factor(epoch: int, train_cfg: TrainConfig) -> float:
    """lr(e) / train.lr for the run's schedule: warm-up × step or cosine decay."""
    t = train_cfg
    if t.scheduler == "step":
        return lr_factor(epoch, t.step_size, t.gamma, t.warmup_epochs, t.warmup_factor)
    warm = warmup_multiplier(epoch, t.warmup_epochs, t.warmup_factor)
    return warm * cosine_factor(epoch, t.epochs, t.min_lr_factor)


class CosineLR(LambdaLR):
    """A `LambdaLR` whose checkpoint also holds the epochs its cosine spans.

    The factor is a closure (LambdaLR saves no state for it), so the curve comes
    from the run's config; `train.epochs` may change on `--resume`, which would
    silently bend a cosine half-way, so the span is saved (`cosine_epochs`, in
    `__dict__`, which `LambdaLR.state_dict` saves) and checked on restore.
    """

    def __init__(
        self, optimizer: Optimizer, factor: Callable[[int], float], cosine_epochs: int
    ) -> None:
        self.cosine_epochs = cosine_epochs
        super().__init__(optimizer, factor)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved = state_dict.get("cosine_epochs", self.cosine_epochs)
        if saved != self.cosine_epochs:
            raise ConfigError(
                f"train.epochs={self.cosine_epochs}: this run's cosine schedule spans {saved} "
                "epochs (train.scheduler=cosine decays over train.epochs), so it cannot be "
                f"continued over {self.cosine_epochs}; resume with train.epochs={saved}, or "
                "start a new run to train longer"
            )
        super().load_state_dict(state_dict)


def build_scheduler(optimizer: Optimizer, train_cfg: TrainConfig) -> LRScheduler:
    """The run's per-epoch schedule: `StepLR` for a step decay without a warm-up, otherwise
    a `LambdaLR` of `schedule_factor` (a `CosineLR` for the cosine)."""
    t = train_cfg
    if t.scheduler == "step" and t.warmup_epochs == 0:
        return StepLR(optimizer, t.step_size, t.gamma)
    settings = replace(t)  # a copy: later edits to train_cfg do not move the schedule

    # A closure, not a callable object: LambdaLR then saves no lambda state (`None`),
    # so the checkpoint holds only numbers and the settings come from the run's config.
    def factor(epoch: int) -> float:
        return schedule_factor(epoch, settings)

    if t.scheduler == "cosine":
        return CosineLR(optimizer, factor, t.epochs)
    return LambdaLR(optimizer, factor)
