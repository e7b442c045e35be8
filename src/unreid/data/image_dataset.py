"""A torch Dataset over `Sample`s that yields (image, index) and optionally keeps images in RAM.

The index (not the label) travels with the image so the engine can look up
whatever the epoch assigned to that image: pseudo label, camera, true id.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from PIL import Image
from torch.utils.data import Dataset

from unreid.data.samples import Sample


def read_image(path: str) -> Image.Image:
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (OSError, ValueError) as err:
        raise OSError(f"cannot read image {path}: {err}") from err


class ImageDataset(Dataset):
    def __init__(
        self,
        samples: Sequence[Sample],
        transform: Callable[[Image.Image], torch.Tensor],
        cache: bool = False,
    ) -> None:
        self.samples = list(samples)
        self.transform = transform
        self._cache: list[Image.Image] | None = (
            [read_image(s.path) for s in self.samples] if cache else None
        )

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        img = (
            self._cache[index] if self._cache is not None else read_image(self.samples[index].path)
        )
        return self.transform(img), index
