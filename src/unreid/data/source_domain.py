"""The labelled source set of domain adaptation, ready for the training loop.

Its identities are renumbered 0..C_s-1 so they can index a classifier or a memory bank
directly; its images get the same train transform as the target. Settings come as plain
arguments, not a `Config`: the config layer imports the data layer, not the reverse.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from unreid.data.datasets import load_dataset
from unreid.data.image_dataset import ImageDataset
from unreid.data.samples import Sample

log = logging.getLogger(__name__)

Transform = Callable[[Image.Image], torch.Tensor]


@dataclass
class SourceDomain:
    """The labelled source set of domain adaptation, with its class ids 0..C_s-1."""

    samples: list[Sample]
    labels: torch.Tensor  # (N_s,) long
    cameras: torch.Tensor  # (N_s,) long
    images: ImageDataset


def source_domain(
    samples: Sequence[Sample], transform: Transform, cache_images: bool = False
) -> SourceDomain:
    """Class ids are the rank of each pid among the sorted distinct pids (`np.unique`)."""
    samples = list(samples)
    _, ids = np.unique([s.pid for s in samples], return_inverse=True)
    return SourceDomain(
        samples,
        torch.from_numpy(ids.astype(np.int64)),
        torch.tensor([s.camera for s in samples], dtype=torch.long),
        ImageDataset(samples, transform, cache_images),
    )


def load_source(
    name: str,
    root: str | Path,
    transform: Transform,
    cache_images: bool = False,
    keep: Callable[[list[Sample]], list[Sample]] | None = None,
) -> SourceDomain:
    """Load the training split of dataset `name` at `root` as the source domain.

    `keep` filters the samples before any image is read (the up-front image check).

    Raises ValueError when any training image lacks an identity: the source's whole point is
    its labels, and a partly labelled set would silently shrink the source classifier.
    """
    source = load_dataset(name, root)
    if not source.train_is_labelled:
        raise ValueError(
            f"data.source={name!r} ({root}): the source domain needs identity labels "
            "on every training image"
        )
    log.info("source domain: %s", source.summary())
    samples = keep(source.train) if keep is not None else source.train
    return source_domain(samples, transform, cache_images)
