"""A torch Dataset over `Sample`s that yields (image, index) and optionally keeps images in RAM.

The index (not the label) travels with the image so the engine can look up
whatever the epoch assigned to that image: pseudo label, camera, true id.

`ViewsDataset` yields several augmentations of each image stacked as one
(V, 3, H, W) tensor, for a method that trains on more than one view (ICE's
mean teacher). Stacked rather than returned as extra items, the batches keep
the (images, indexes) shape every loader and batch zipper expects.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from PIL import Image
from torch.utils.data import Dataset

from unreid.data.decode import to_rgb
from unreid.data.samples import Sample

__all__ = ["ImageDataset", "ViewsDataset", "read_image"]


def read_image(path: str) -> Image.Image:
    try:
        with Image.open(path) as img:
            return to_rgb(img, path)
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

    def image(self, index: int) -> Image.Image:
        """The decoded image `index` (from the cache when there is one), untransformed."""
        return (
            self._cache[index] if self._cache is not None else read_image(self.samples[index].path)
        )

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.image(index)), index


class ViewsDataset(Dataset):
    """The images of an `ImageDataset` (and its cache), each as V augmented views.

    Items are `((V, 3, H, W), index)`: view v is `transforms[v]` of the image,
    drawn in that order. The first view is the one the model trains on.
    """

    def __init__(
        self, images: ImageDataset, transforms: Sequence[Callable[[Image.Image], torch.Tensor]]
    ) -> None:
        if not transforms:
            raise ValueError("ViewsDataset needs at least one view transform")
        self.images = images
        self.transforms = list(transforms)

    @property
    def samples(self) -> list[Sample]:
        return self.images.samples

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        img = self.images.image(index)
        return torch.stack([t(img) for t in self.transforms]), index
