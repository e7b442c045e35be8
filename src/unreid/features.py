"""Batched feature extraction in eval mode: the input to clustering and to evaluation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from unreid.data.image_dataset import ImageDataset
from unreid.data.samples import Sample
from unreid.data.transforms import test_transform
from unreid.faults import kill_point


@torch.no_grad()
def extract_features(
    model: nn.Module,
    samples: Sequence[Sample],
    height: int,
    width: int,
    batch_size: int = 128,
    workers: int = 2,
    device: torch.device | str = "cpu",
    desc: str = "extract",
    progress: bool = True,
) -> torch.Tensor:
    """(N, D) float32 CPU tensor, in the order of `samples`."""
    if len(samples) == 0:
        raise ValueError(f"{desc}: no images to extract features from")
    loader = DataLoader(
        ImageDataset(samples, test_transform(height, width)),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        pin_memory=str(device).startswith("cuda"),
    )
    was_training = model.training
    model.eval()
    chunks = []
    for images, _ in tqdm(loader, desc=desc, leave=False, disable=not progress):
        chunks.append(model(images.to(device, non_blocking=True)).float().cpu())
        kill_point("extract")
    model.train(was_training)
    return torch.cat(chunks)


@dataclass(frozen=True)
class Extractor:
    """`extract_features` with the run's image size, batch size, workers and device bound.

    The loop extracts the training set, the source set and the evaluation
    splits with the same settings; binding them once keeps each call to what
    differs (model, images, progress label) and gives the multi-device work
    one place to shard extraction.
    """

    height: int
    width: int
    batch_size: int = 128
    workers: int = 2
    device: torch.device | str = "cpu"
    progress: bool = True

    def __call__(self, model: nn.Module, samples: Sequence[Sample], desc: str) -> torch.Tensor:
        return extract_features(
            model,
            samples,
            self.height,
            self.width,
            self.batch_size,
            self.workers,
            self.device,
            desc=desc,
            progress=self.progress,
        )

    def with_batch_size(self, batch_size: int) -> Extractor:
        return replace(self, batch_size=batch_size)
