"""What the loop runs on: the data of a run, and the trainable parts with their optimizer.

Kept out of `loop.py` so `train()` reads as the algorithm; kept together so
the order of the random draws at start-up (data split, then model and method
initialisation) stays the one a seed has always meant.
"""

from __future__ import annotations

import logging
import random
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from unreid.checkpoint import load_checkpoint, load_state
from unreid.config import Config, ConfigError
from unreid.data.image_dataset import ImageDataset, ViewsDataset
from unreid.data.samples import ReidDataset, Sample
from unreid.data.transforms import view_transforms
from unreid.distributed import DistContext
from unreid.engine.optim import build_optimizer
from unreid.engine.schedule import build_scheduler
from unreid.engine.training_data import TrainingData
from unreid.methods import Method, MethodContext, build_method
from unreid.models.bn_groups import check_group_size, fit_group_size
from unreid.models.reid_model import ReidModel, build_model
from unreid.models.vit import VitReidModel
from unreid.precision import Precision, prepare_model, set_tf32

log = logging.getLogger("unreid")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"train.device={name!r} but CUDA is not available on this machine")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def check_cameras(method: Method, samples: list[Sample], dataset: ReidDataset) -> None:
    """A camera-aware method refuses a set without two cameras; others warn on a single one.

    With one camera there is no cross-camera signal: every pseudo identity lies in one
    view, so nothing teaches the network to match a person across viewpoints, lighting
    and background, which is what re-ID is for. It still trains (within-camera
    retrieval, or a start), so for other methods this is a warning, not an error.
    """
    cams = sorted({s.camera for s in samples})
    if method.requires_cameras and (len(cams) < 2 or cams[0] < 0):
        raise ValueError(
            f"method={method.name!r} needs camera ids: it splits clusters by camera, but the "
            f"training set of {dataset.name!r} has camera ids {cams[:10]} (at least two "
            "distinct ids >= 0 are needed). Use a loader that reads cameras, or another method."
        )
    if len(cams) == 1:
        log.warning(
            "the training set of %r (%s) comes from a single camera (%s): with no second "
            "camera there is no cross-camera signal, so the model learns to match people "
            "within that one view and will be weak at matching them across cameras; add "
            "crops from other cameras (one sub-folder each) if you have them",
            dataset.name,
            dataset.root,
            dataset.camera_name(cams[0]) if cams[0] >= 0 else "no camera id",
        )


def training_views(
    method: Method, data: TrainingData, cfg: Config, ctx: DistContext
) -> ViewsDataset:
    """The training images as `method.views`; refused where only one view can be made."""
    why = ""
    if ctx.distributed:
        why = "a torchrun run (DDP gathers features, not the extra views); run one process"
    elif not isinstance(data.images, ImageDataset):
        why = "data.decoded_cache=true (batch augmentation makes one view); set it to false"
    if why:
        raise ConfigError(f"method={method.name!r} trains on several views of each image: {why}")
    d = cfg.data
    return ViewsDataset(
        data.images, view_transforms(method.views, d.height, d.width, d.erasing_fill)
    )


@dataclass
class RunState:
    epoch: int = 0  # next epoch to run
    best_map: float = -1.0
    best_epoch: int = -1


@dataclass
class TrainingRun:
    """Model, method (memories and extra modules), optimizer and schedule, saved together;
    with how the forward pass runs (precision, BN groups) and on which ranks."""

    model: ReidModel | VitReidModel
    method: Method
    optimizer: torch.optim.Optimizer
    scheduler: Any
    runner: nn.Module | None = None  # what the step calls: the model, or its DDP / compiled form
    precision: Precision = field(default_factory=lambda: Precision("off", "cpu"))
    ctx: DistContext = field(default_factory=DistContext)
    bn_group_size: int = 0
    bn_running_stats: str = "first"
    num_instances: int = 1
    channels_last: bool = False

    def __post_init__(self) -> None:
        if self.runner is None:
            self.runner = self.model

    def state_dicts(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "method": self.method.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.precision.state_dict(),
        }

    def next_epoch(self) -> None:
        """Advance the schedule, also after an epoch whose training was skipped."""
        with warnings.catch_warnings():  # torch warns when no optimizer step came first
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
            self.scheduler.step()

    def restore(self, path: str | Path) -> RunState:
        """Model, method (memories included), optimizer and schedule as saved at `path`."""
        ckpt = load_checkpoint(path)
        load_state(self.model, ckpt["model"], f"{path} (model)")
        load_state(self.method, ckpt["method"], f"{path} (method)")
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.precision.load_state_dict(ckpt.get("scaler") or {})
        state = RunState(**ckpt["state"])
        log.info("resumed from %s at epoch %d", path, state.epoch)
        return state


def build_run(cfg: Config, data: TrainingData, ctx: DistContext) -> TrainingRun:
    t, device = cfg.train, ctx.device
    cams = data.cameras  # camera ids index the camera embedding of a transformer, if any
    num_cameras = int(cams.max()) + 1 if len(cams) and int(cams.min()) >= 0 else 0
    size = (cfg.data.height, cfg.data.width)
    model = build_model(cfg.model, size, num_cameras).to(device)
    context = MethodContext(
        model.feature_dim, t.num_instances, t.seed, cfg.cluster, adapting=bool(cfg.data.source)
    )
    method = build_method(cfg.method, cfg.method_cfg, context).to(device)
    check_cameras(method, data.train, data.dataset)
    method.bind_model(model)  # before the optimizer: a copy of the model (ICE's teacher) stays out
    if method.views:  # each image as several augmentations (ICE)
        data.images = training_views(method, data, cfg, ctx)
    per_device = t.batch_size // ctx.world_size // (2 if data.source is not None else 1)
    bn_group_size = fit_group_size(t.bn_group_size, per_device)  # a small batch: one group
    check_group_size(bn_group_size, per_device, t.num_instances)
    named = [*model.named_parameters(), *(("method." + n, p) for n, p in method.named_parameters())]
    optimizer = build_optimizer([(n, p) for n, p in named if p.requires_grad], t)
    scheduler = build_scheduler(optimizer, t)
    set_tf32(t.tf32)
    runner = prepare_model(model, t.channels_last, t.compile, wrap=ctx.wrap)
    precision = Precision.from_setting(t.amp, device)
    return TrainingRun(
        model, method, optimizer, scheduler, runner, precision, ctx,
        bn_group_size, t.bn_running_stats, t.num_instances, t.channels_last,
    )  # fmt: skip
