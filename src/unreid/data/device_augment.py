"""The training augmentations applied to a whole uint8 batch at once, on the training device.

Per-image PIL augmentation in loader workers cannot keep a GPU busy at
ResNet-50 / batch 256 speeds: each worker decodes, flips, pads, crops,
converts and erases one image at a time. With the images decoded once at the
training size (`decoded_cache.py`), workers only gather bytes, and this module
does the rest for the whole batch in a few tensor ops on the device.

The draws follow `transforms.train_transform` exactly, so the two pipelines
sample the same distribution (the tests compare them draw by draw and in
distribution): flip with probability 0.5; pad 10 with zero (black) pixels and
crop back to H×W at a top-left offset uniform on 0..20 in each axis; scale to
[0, 1] and normalise with the ImageNet statistics; with probability 0.5 erase
one rectangle, drawn as torchvision's `RandomErasing` does: up to 10 tries of
area uniform in 2-40 % of the image and aspect log-uniform in 0.3-3.3, h and w
rounded half to even, the first try that fits (h < H, w < W) placed uniformly;
no erasure when none fits. `erasing_fill` takes the names of the per-image
transform ("zero": the mean colour; "reference": Cluster Contrast's values).
Random numbers come from the caller's `torch.Generator` on the batch's device,
so a seeded epoch replays the same augmentations; they are not the same
numbers the per-image pipeline would draw from its global generator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from unreid.data.transforms import ERASING_FILLS, IMAGENET_MEAN, IMAGENET_STD

__all__ = ["AugmentParams", "DeviceAugment", "normalize_batch"]

ERASING_TRIES = 10  # torchvision's RandomErasing gives up after 10 tries


def normalize_batch(images: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
    """A uint8 (B, 3, H, W) batch as the test transform gives it: [0, 1], ImageNet-normalised.

    For extraction from the decoded cache, whose rows are already resized.
    """
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1)
    out = images.float().div(255).sub(mean).div(std)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return out.contiguous(memory_format=fmt)


@dataclass(frozen=True)
class AugmentParams:
    """One batch's draws, each a (B,) tensor: what `DeviceAugment.apply` does to every row."""

    flip: torch.Tensor  # bool
    top: torch.Tensor  # crop offset in the padded image, 0..2 * pad
    left: torch.Tensor
    erase: torch.Tensor  # bool: a rectangle is erased
    erase_top: torch.Tensor  # the rectangle (meaningless where erase is False)
    erase_left: torch.Tensor
    erase_height: torch.Tensor
    erase_width: torch.Tensor


@dataclass(frozen=True)
class DeviceAugment:
    """uint8 (B, 3, H, W) batch + generator -> normalised, augmented float32 batch."""

    height: int
    width: int
    pad: int = 10
    flip_p: float = 0.5
    erasing_p: float = 0.5
    erasing_scale: tuple[float, float] = (0.02, 0.4)
    erasing_ratio: tuple[float, float] = (0.3, 3.3)
    erasing_fill: str = "zero"

    def __post_init__(self) -> None:
        if self.erasing_fill not in ERASING_FILLS:
            raise ValueError(
                f"erasing_fill must be one of {', '.join(ERASING_FILLS)}, "
                f"found {self.erasing_fill!r}"
            )
        if min(self.height, self.width) < 1 or self.pad < 0:
            raise ValueError(
                f"DeviceAugment: height, width must be >= 1 and pad >= 0, found "
                f"{self.height}, {self.width}, {self.pad}"
            )

    def __call__(
        self, images: torch.Tensor, generator: torch.Generator, channels_last: bool = False
    ) -> torch.Tensor:
        """Draw this batch's augmentations from `generator` and apply them."""
        self._check(images)
        params = self.draw(images.shape[0], generator, images.device)
        return self.apply(images, params, channels_last)

    def _check(self, images: torch.Tensor) -> None:
        want = (3, self.height, self.width)
        if images.dtype != torch.uint8 or images.dim() != 4 or tuple(images.shape[1:]) != want:
            raise ValueError(
                f"DeviceAugment expects a uint8 (B, {', '.join(map(str, want))}) batch, "
                f"found {images.dtype} {tuple(images.shape)}"
            )

    def draw(self, batch: int, generator: torch.Generator, device: torch.device) -> AugmentParams:
        """Every random choice of the batch, drawn as the per-image transforms draw them."""
        device = torch.device(device)
        if generator.device.type != device.type:
            raise ValueError(
                f"DeviceAugment: the generator is on {generator.device}, the batch on {device}; "
                "pass a generator created on the batch's device"
            )
        g = {"generator": generator, "device": device}
        flip = torch.rand(batch, **g) < self.flip_p
        top = torch.randint(0, 2 * self.pad + 1, (batch,), **g)
        left = torch.randint(0, 2 * self.pad + 1, (batch,), **g)
        erase = torch.rand(batch, **g) < self.erasing_p
        area = self.height * self.width
        lo, hi = self.erasing_scale
        log_lo, log_hi = math.log(self.erasing_ratio[0]), math.log(self.erasing_ratio[1])
        tries = (batch, ERASING_TRIES)
        target = area * (lo + (hi - lo) * torch.rand(tries, dtype=torch.float64, **g))
        aspect = torch.exp(log_lo + (log_hi - log_lo) * torch.rand(tries, dtype=torch.float64, **g))
        h = torch.round(torch.sqrt(target * aspect)).long()  # round half to even, as round()
        w = torch.round(torch.sqrt(target / aspect)).long()
        fits = (h < self.height) & (w < self.width)
        first = fits.long().argmax(1, keepdim=True)  # first try that fits (0 if none does)
        eh, ew = h.gather(1, first).squeeze(1), w.gather(1, first).squeeze(1)
        erase = erase & fits.any(1)
        eh, ew = torch.where(erase, eh, 0), torch.where(erase, ew, 0)
        # uniform on 0..H-h: floor(u * (H - h + 1)) for u in [0, 1)
        u = torch.rand((2, batch), dtype=torch.float64, **g)
        ei = (u[0] * (self.height - eh + 1)).long().clamp_max(self.height - eh)
        ej = (u[1] * (self.width - ew + 1)).long().clamp_max(self.width - ew)
        return AugmentParams(flip, top, left, erase, ei, ej, eh, ew)

    def apply(
        self, images: torch.Tensor, params: AugmentParams, channels_last: bool = False
    ) -> torch.Tensor:
        """The augmented batch for given draws (also how the tests replay a draw)."""
        self._check(images)
        b, dev = images.shape[0], images.device
        x = torch.where(params.flip.view(-1, 1, 1, 1), images.flip(-1), images)
        rows = params.top.view(-1, 1) + torch.arange(self.height, device=dev) - self.pad
        cols = params.left.view(-1, 1) + torch.arange(self.width, device=dev) - self.pad
        inside = ((rows >= 0) & (rows < self.height)).view(b, -1, 1) & (
            (cols >= 0) & (cols < self.width)
        ).view(b, 1, -1)
        r = rows.clamp(0, self.height - 1).view(b, -1, 1)
        c = cols.clamp(0, self.width - 1).view(b, 1, -1)
        batch_index = torch.arange(b, device=dev).view(-1, 1, 1)
        crop = x.permute(0, 2, 3, 1)[batch_index, r, c]  # (B, H, W, 3): a gather per pixel
        crop = crop * inside.unsqueeze(-1).to(crop.dtype)  # padding is black
        mean = torch.tensor(IMAGENET_MEAN, device=dev)
        std = torch.tensor(IMAGENET_STD, device=dev)
        out = crop.float().div(255).sub(mean).div(std)  # ToTensor + Normalize, per channel
        ys = torch.arange(self.height, device=dev).view(1, -1, 1)
        xs = torch.arange(self.width, device=dev).view(1, 1, -1)
        et, el = params.erase_top.view(-1, 1, 1), params.erase_left.view(-1, 1, 1)
        box = (
            params.erase.view(-1, 1, 1)
            & (ys >= et)
            & (ys < et + params.erase_height.view(-1, 1, 1))
            & (xs >= el)
            & (xs < el + params.erase_width.view(-1, 1, 1))
        )
        fill = torch.tensor(ERASING_FILLS[self.erasing_fill], device=dev).expand(3)
        out = torch.where(box.unsqueeze(-1), fill, out).permute(0, 3, 1, 2)  # NHWC -> NCHW view
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        return out.contiguous(memory_format=fmt)
