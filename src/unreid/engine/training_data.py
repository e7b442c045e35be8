"""The data of a run: splits after the hold-out, images checked up front, the source domain.

Sizes a small dataset cannot meet and unreadable images stop the run here,
before a model is built or a run folder touched; crops far smaller than the
model's input are a warning (they train, on blurred upscaled detail). With
`data.decoded_cache` the training images are decoded once into uint8 tensors and
augmented batch-wise (`DeviceAugment`), on the device with `data.device_augment`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from unreid.config import Config
from unreid.data.datasets import load_dataset
from unreid.data.decoded_cache import CachedImages, DecodedCache
from unreid.data.device_augment import DeviceAugment
from unreid.data.image_check import check_images, median_size
from unreid.data.image_dataset import ImageDataset
from unreid.data.samples import ReidDataset, Sample
from unreid.data.source_domain import SourceDomain, load_source
from unreid.data.splits import holdout_split
from unreid.data.transforms import train_transform
from unreid.errors import ConfigError

log = logging.getLogger("unreid")


@dataclass
class TrainingData:
    """The training images after the validation hold-out, the evaluation splits, the source."""

    dataset: ReidDataset
    train: list[Sample]
    val_query: list[Sample]
    val_gallery: list[Sample]
    images: ImageDataset | CachedImages  # transformed images, or uint8 ones to augment
    source: SourceDomain | None = None
    # batch-wise augmentation of decoded uint8 images (data.decoded_cache), else None
    augment: DeviceAugment | None = None
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
    hold = holdout(cfg, dataset.train)
    train, val_query, val_gallery = holdout_split(dataset.train, hold, cfg.train.seed)
    check_sizes(cfg, dataset.train, train, hold)
    warn_small_crops(cfg, train)
    if cfg.eval.select_best_on == "val" and not val_query:
        log.warning(
            "eval.select_best_on=val but there is no validation split (data.holdout_ids=%d): "
            "best.pth will not be written. Hold out labelled identities (data.holdout_ids=N) "
            "or set eval.select_best_on=test|none.",
            hold,
        )
    transform = train_transform(d.height, d.width, erasing_fill=d.erasing_fill)
    source = None
    if d.source:  # domain adaptation
        root = d.source_root or d.root

        def keep(samples: list[Sample]) -> list[Sample]:
            return readable(samples, cfg, "source", progress)

        source = load_source(d.source, root, transform, d.cache_images, keep=keep)
    if not d.decoded_cache:
        images = ImageDataset(train, transform, d.cache_images)
        return TrainingData(dataset, train, val_query, val_gallery, images, source)
    images = decoded(train, cfg, progress)
    if source is not None:
        source = replace(source, images=decoded(source.samples, cfg, progress))
    augment = DeviceAugment(d.height, d.width, erasing_fill=d.erasing_fill)
    return TrainingData(dataset, train, val_query, val_gallery, images, source, augment)


def decoded(samples: list[Sample], cfg: Config, progress: bool) -> CachedImages:
    d = cfg.data
    cache = DecodedCache.build(
        samples, d.height, d.width, d.decoded_cache_gb, workers=d.workers, progress=progress
    )
    return CachedImages(cache)


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


def holdout(cfg: Config, labelled: list[Sample]) -> int:
    """How many identities to hold out: `data.holdout_ids`, or 0 where there are none.

    Unlabelled training images (a folder of one's own crops) have no identities to
    hold out, so a preset's holdout (the demo's 10) does not apply to them: ignored
    with a log line rather than refused, so the same preset runs on either.
    """
    hold, ids = cfg.data.holdout_ids, {s.pid for s in labelled}
    if hold and None in ids:
        log.info(
            "data.holdout_ids=%d does not apply: the training images of %r carry no identity "
            "labels, so there is no validation split",
            hold,
            cfg.data.dataset,
        )
        return 0
    if hold and 2 * hold > len(ids):
        raise ConfigError(
            f"data.holdout_ids={hold} holds out more than half of the {len(ids)} training "
            "identities; lower data.holdout_ids"
        )
    return hold


def warn_small_crops(cfg: Config, train: list[Sample]) -> None:
    """A WARNING when the median crop is under half the input height or width.

    Such crops are upscaled more than twice to data.height x data.width: training
    and search then see interpolated blur, and the input costs compute for detail
    that is not there. A hint, not an error: small crops may be all there is.
    """
    d = cfg.data
    found = median_size([s.path for s in train])
    if found is None:
        return
    height, width, measured = found
    if 2 * height >= d.height and 2 * width >= d.width:
        return
    log.warning(
        "the training crops are small for the model's input: median crop %dx%d (height x "
        "width, over %d images) against data.height x data.width = %dx%d, so each crop is "
        "upscaled more than 2x and the network sees blurred detail; an input nearer the "
        "crops' size (data.height=, data.width=) trains faster on the same information, or "
        "use larger crops if the detector can give them",
        height,
        width,
        measured,
        d.height,
        d.width,
    )


def check_sizes(cfg: Config, labelled: list[Sample], train: list[Sample], hold: int) -> None:
    """Settings a small dataset cannot meet, named with the keys involved, before training."""
    n, c = len(train), cfg.cluster
    taken = f" after data.holdout_ids={hold} held out {len(labelled) - n}" if hold else ""
    method = "ground_truth" if cfg.train.ground_truth else c.method
    # DBSCAN's k1 is scaled to a small set instead (engine/small_sets.py)
    need = {"infomap": ("cluster.infomap_k", c.infomap_k)}
    if method in need and need[method][1] >= n:
        key, k = need[method]
        raise ConfigError(
            f"{key}={k} needs more than {k} training images, but the training split has {n}"
            f"{taken}; lower {key}" + (" or data.holdout_ids" if hold else "")
        )
