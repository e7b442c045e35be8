"""Every training image decoded once, at the training size, into one shared uint8 tensor.

Decoding a JPEG and resizing it costs more than everything else a loader
worker does, and the per-image pipeline pays it for every image of every
epoch. Here each image is decoded and resized (bicubic, exactly as the
train transform's `Resize` does) once, into an (N, 3, H, W) uint8 tensor in
shared memory, so DataLoader workers, forked or spawned, read the same pages
instead of copies, and a batch is a gather of bytes; `device_augment.py` does
the random part on the device. It costs N·3·H·W bytes: Market-1501's 12,936
crops at 256×128 take 1.27 GB. A set that would exceed the budget is refused
before anything is decoded, naming the budget key, rather than swapping or
being killed halfway through an epoch.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import torch
import torchvision.transforms.functional as F
from torch.utils.data import Dataset
from torchvision.transforms import InterpolationMode

from unreid.data.image_dataset import read_image
from unreid.data.samples import Sample

__all__ = ["BUDGET_KEY", "CachedImages", "DecodedCache", "decode_resized", "decoded_bytes"]

BUDGET_KEY = "data.decoded_cache_gb"
GB = 1e9


def decoded_bytes(count: int, height: int, width: int) -> int:
    """Bytes the cache of `count` RGB images at height × width holds."""
    return count * 3 * height * width


def decode_resized(path: str, height: int, width: int) -> torch.Tensor:
    """(3, H, W) uint8: the image as the train transform sees it right after `Resize`."""
    img = F.resize(read_image(path), [height, width], interpolation=InterpolationMode.BICUBIC)
    return F.pil_to_tensor(img)


class DecodedCache:
    """`images[i]` is sample i decoded and resized: (N, 3, H, W) uint8 in shared memory."""

    def __init__(self, images: torch.Tensor) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(
                f"DecodedCache holds a uint8 (N, 3, H, W) tensor, found {images.dtype} "
                f"{tuple(images.shape)}"
            )
        self.images = images

    @classmethod
    def build(
        cls,
        samples: Sequence[Sample],
        height: int,
        width: int,
        budget_gb: float,
        workers: int = 0,
        progress: bool = False,
    ) -> DecodedCache:
        """Decode `samples` in order with `workers` threads (0 = in this thread).

        PIL releases the GIL while it decodes and resizes, so threads scale
        without the cost of processes. Raises ValueError naming `BUDGET_KEY`
        when the cache would take more than `budget_gb` GB (1e9 bytes).
        """
        need = decoded_bytes(len(samples), height, width)
        if need > budget_gb * GB:
            raise ValueError(
                f"{BUDGET_KEY}={budget_gb:g}: decoding {len(samples):,} images at "
                f"{height}x{width} needs {need / GB:.2f} GB (N x 3 x H x W bytes); raise "
                f"{BUDGET_KEY} to at least {need / GB:.2f} or turn the decoded cache off"
            )
        if not samples:
            raise ValueError("DecodedCache: no images to decode")
        images = torch.empty((len(samples), 3, height, width), dtype=torch.uint8)
        images.share_memory_()  # before filling: moving a full tensor would copy it

        def fill(i: int) -> None:
            images[i] = decode_resized(samples[i].path, height, width)

        indexes = range(len(samples))
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(samples), desc="decode", unit="img", leave=False)
        if workers > 0:
            with ThreadPoolExecutor(workers) as pool:
                for _ in pool.map(fill, indexes):
                    if bar is not None:
                        bar.update()
        else:
            for i in indexes:
                fill(i)
                if bar is not None:
                    bar.update()
        if bar is not None:
            bar.close()
        return cls(images)

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def nbytes(self) -> int:
        return self.images.numel()


class CachedImages(Dataset):
    """(uint8 image, index) per item, for the P×K loaders in place of `ImageDataset`.

    Workers only copy bytes out of the shared tensor; the augmentation
    (`DeviceAugment`) runs on the batch after it reaches the device.
    `samples` travels along for code that reads a dataset's samples.
    """

    def __init__(self, cache: DecodedCache, samples: Sequence[Sample] | None = None) -> None:
        if samples is not None and len(samples) != len(cache):
            raise ValueError(
                f"CachedImages: {len(samples)} samples for a cache of {len(cache)} images"
            )
        self.cache = cache
        self.samples = list(samples) if samples is not None else None

    def __len__(self) -> int:
        return len(self.cache)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.cache.images[index], index
