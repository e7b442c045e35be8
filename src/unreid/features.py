"""Batched feature extraction in eval mode: the input to clustering and to evaluation."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from unreid.data.image_dataset import ImageDataset
from unreid.data.samples import Sample
from unreid.data.transforms import test_transform
from unreid.distributed import DistContext
from unreid.faults import kill_point
from unreid.models.vit import camera_ids
from unreid.precision import Precision


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
    autocast: Callable[[], AbstractContextManager] = nullcontext,
) -> torch.Tensor:
    """(N, D) float32 CPU tensor, in the order of `samples` (forward under `autocast()`)."""
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
    cameras = torch.tensor([s.camera for s in samples])  # for a camera embedding, if any
    for images, index in tqdm(loader, desc=desc, leave=False, disable=not progress):
        with autocast(), camera_ids(model, cameras[index]):
            out = model(images.to(device, non_blocking=True))
        chunks.append(out.float().cpu())
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
    precision: Precision | None = None  # autocast for the forward (features stay fp32)
    ctx: DistContext | None = None  # under DDP each rank extracts its shard, then all gather

    def __call__(self, model: nn.Module, samples: Sequence[Sample], desc: str) -> torch.Tensor:
        ctx = self.ctx
        shard = ctx.shard(len(samples)) if ctx is not None else range(len(samples))
        mine = samples[shard.start : shard.stop]
        feats = extract_features(
            model,
            mine,
            self.height,
            self.width,
            self.batch_size,
            self.workers,
            self.device,
            desc=desc,
            progress=self.progress,
            autocast=self.precision.autocast if self.precision else nullcontext,
        )
        if ctx is None or not ctx.distributed:
            return feats
        return ctx.all_gather_rows(feats.to(ctx.device), ctx.counts(len(samples))).cpu()

    def with_batch_size(self, batch_size: int) -> Extractor:
        return replace(self, batch_size=batch_size)
