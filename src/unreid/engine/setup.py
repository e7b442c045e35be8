"""What the loop runs on: the data of a run, and the trainable parts with their optimizer.

Kept out of `loop.py` so `train()` reads as the algorithm; kept together so
the order of the random draws at start-up (data split, then model and method
initialisation) stays the one a seed has always meant.
"""

from __future__ import annotations

import logging
import random
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unreid.checkpoint import load_checkpoint, load_state
from unreid.config import Config
from unreid.data.datasets import load_dataset
from unreid.data.image_check import check_images
from unreid.data.image_dataset import ImageDataset
from unreid.data.samples import ReidDataset, Sample
from unreid.data.source_domain import SourceDomain, load_source
from unreid.data.splits import holdout_split
from unreid.data.transforms import train_transform
from unreid.errors import ConfigError
from unreid.methods import Method, MethodContext, build_method
from unreid.models.reid_model import ReidModel, build_model

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


@dataclass
class TrainingData:
    """The training images after the validation hold-out, the evaluation splits, the source."""

    dataset: ReidDataset
    train: list[Sample]
    val_query: list[Sample]
    val_gallery: list[Sample]
    images: ImageDataset  # the training images with the training transform
    source: SourceDomain | None = None
    cameras: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        self.cameras = torch.tensor([s.camera for s in self.train])

    @property
    def true_ids(self) -> list[int | None] | None:
        return [s.pid for s in self.train] if self.dataset.train_is_labelled else None

    @property
    def has_test(self) -> bool:
        return self.dataset.has_test_split

    @property
    def eval_splits(self) -> list[str]:
        """Splits evaluated at an evaluation epoch, in the order they are run."""
        return [s for s, ok in (("test", self.has_test), ("val", bool(self.val_query))) if ok]

    def split(self, name: str) -> tuple[list[Sample], list[Sample]]:
        if name == "val":
            return self.val_query, self.val_gallery
        return self.dataset.query, self.dataset.gallery


def load_training_data(cfg: Config, progress: bool = False) -> TrainingData:
    """Every split, with every image decoded once up front and the sizes checked."""
    d = cfg.data
    dataset = load_dataset(d.dataset, d.root)
    log.info("%s", dataset.summary())
    dataset = replace(
        dataset,
        train=readable(dataset.train, cfg, "train", progress),
        query=readable(dataset.query, cfg, "query", progress),
        gallery=readable(dataset.gallery, cfg, "gallery", progress),
    )
    check_holdout(cfg, dataset.train)
    train, val_query, val_gallery = holdout_split(dataset.train, d.holdout_ids, cfg.train.seed)
    check_sizes(cfg, dataset.train, train)
    if cfg.eval.select_best_on == "val" and not val_query:
        log.warning(
            "eval.select_best_on=val but there is no validation split (data.holdout_ids=%d): "
            "best.pth will not be written. Hold out labelled identities (data.holdout_ids=N) "
            "or set eval.select_best_on=test|none.",
            d.holdout_ids,
        )
    transform = train_transform(d.height, d.width, erasing_fill=d.erasing_fill)
    source = None
    if d.source:  # domain adaptation
        root = d.source_root or d.root

        def keep(samples: list[Sample]) -> list[Sample]:
            return readable(samples, cfg, "source", progress)

        source = load_source(d.source, root, transform, d.cache_images, keep=keep)
    images = ImageDataset(train, transform, d.cache_images)
    return TrainingData(dataset, train, val_query, val_gallery, images, source)


def readable(samples: list[Sample], cfg: Config, split: str, progress: bool) -> list[Sample]:
    """The split's images that decode; `data.bad_images` says whether others stop the run."""
    if not samples:
        return samples
    cache = Path(cfg.out_dir) / ".image_check" / f"{cfg.data.dataset}-{split}.json"
    found = check_images(
        samples,
        policy=cfg.data.bad_images,
        cache_path=cache,
        workers=max(1, cfg.data.workers),
        progress=progress,
    )
    if found.bad:
        log.warning(
            "%s split: skipped %d unreadable images (data.bad_images=skip), e.g. %s",
            split,
            len(found.bad),
            "; ".join(f"{p}: {why}" for p, why in found.bad[:3]),
        )
    return found.kept


def check_holdout(cfg: Config, labelled: list[Sample]) -> None:
    hold, ids = cfg.data.holdout_ids, {s.pid for s in labelled}
    if hold and 2 * hold > len(ids):
        raise ConfigError(
            f"data.holdout_ids={hold} holds out more than half of the {len(ids)} training "
            "identities; lower data.holdout_ids"
        )


def check_sizes(cfg: Config, labelled: list[Sample], train: list[Sample]) -> None:
    """Settings a small dataset cannot meet, named with the keys involved, before training."""
    n, c, hold = len(train), cfg.cluster, cfg.data.holdout_ids
    taken = f" after data.holdout_ids={hold} held out {len(labelled) - n}" if hold else ""
    method = "ground_truth" if cfg.train.ground_truth else c.method
    need = {"dbscan": ("cluster.k1", c.k1), "infomap": ("cluster.infomap_k", c.infomap_k)}
    if method in need and need[method][1] >= n:
        key, k = need[method]
        raise ConfigError(
            f"{key}={k} needs more than {k} training images, but the training split has {n}"
            f"{taken}; lower {key}" + (" or data.holdout_ids" if hold else "")
        )


def check_cameras(method: Method, samples: list[Sample], dataset: str) -> None:
    if not method.requires_cameras:
        return
    cams = sorted({s.camera for s in samples})
    if len(cams) < 2 or cams[0] < 0:
        raise ValueError(
            f"method={method.name!r} needs camera ids: it splits clusters by camera, but the "
            f"training set of {dataset!r} has camera ids {cams[:10]} (at least two distinct "
            "ids >= 0 are needed). Use a loader that reads cameras, or another method."
        )


@dataclass
class RunState:
    epoch: int = 0  # next epoch to run
    best_map: float = -1.0
    best_epoch: int = -1


@dataclass
class TrainingRun:
    """Model, method (memories and extra modules), optimizer and schedule, saved together."""

    model: ReidModel
    method: Method
    optimizer: torch.optim.Optimizer
    scheduler: Any

    def state_dicts(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "method": self.method.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
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
        state = RunState(**ckpt["state"])
        log.info("resumed from %s at epoch %d", path, state.epoch)
        return state


def build_run(cfg: Config, data: TrainingData, device: torch.device) -> TrainingRun:
    model = build_model(cfg.model).to(device)
    context = MethodContext(model.feature_dim, cfg.train.num_instances, cfg.train.seed)
    method = build_method(cfg.method, cfg.method_cfg, context).to(device)
    check_cameras(method, data.train, cfg.data.dataset)
    params = [p for p in [*model.parameters(), *method.parameters()] if p.requires_grad]
    t = cfg.train
    optimizer = torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, t.step_size, t.gamma)
    return TrainingRun(model, method, optimizer, scheduler)
