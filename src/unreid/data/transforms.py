"""Train and test image transforms, as every reference recipe uses them.

Train: resize (bicubic), flip 0.5, pad 10 + random crop, ImageNet normalisation,
random erasing 0.5 (area 2-40 % of the image, aspect 0.3-3.3).

What the erased rectangle holds differs from the reference on purpose. Cluster
Contrast's erasing runs after normalisation and writes (0.485, 0.456, 0.406),
the ImageNet mean in [0, 1] pixel units, into the already normalised tensor:
in pixel terms a light grey of about (0.596, 0.558, 0.497), not the mean
colour. Ours writes 0, which after normalisation is the mean colour itself,
the neutral value the paper's mean-filling intends. `erasing_fill="reference"`
reproduces the reference values for runs that must match its numbers.
Erasing is torchvision's, which draws the aspect log-uniformly and gives up
after 10 tries; the reference draws it uniformly and tries 100 times.

Views: a method that trains on several augmentations of each image (ICE's
mean teacher) names them from `VIEWS`: "train" (the above), "strong" (ICE's
strong view: the above plus a Gaussian blur with probability 0.5, sigma
uniform on 0.1-2 pixels, and erasing with probability 0.6; chenhao2345/ICE
examples/unsupervised_train.py) and "weak" (ICE's weak view: resize and
normalise only, the test transform).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torchvision.transforms as T
from PIL import Image, ImageFilter
from torchvision.transforms import InterpolationMode

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

ERASING_FILLS = {"zero": 0.0, "reference": IMAGENET_MEAN}
"""Value written into the erased rectangle of the normalised tensor, per fill name."""


def train_transform(height: int, width: int, erasing_fill: str = "zero") -> T.Compose:
    return _augmented(height, width, erasing_fill, blur=0.0, erasing=0.5)


def strong_transform(height: int, width: int, erasing_fill: str = "zero") -> T.Compose:
    """ICE's strong view: the train transform with a Gaussian blur (p 0.5) and erasing p 0.6."""
    return _augmented(height, width, erasing_fill, blur=0.5, erasing=0.6)


class RandomGaussianBlur:
    """PIL's Gaussian blur with a standard deviation uniform on `sigma` (SimCLR's, as ICE).

    Drawn from torch's generator, like torchvision's own random transforms, so a
    seeded run and its loader workers replay the same blurs.
    """

    def __init__(self, sigma: tuple[float, float] = (0.1, 2.0)) -> None:
        self.sigma = sigma

    def __call__(self, img: Image.Image) -> Image.Image:
        low, high = self.sigma
        radius = low + (high - low) * float(torch.rand(()))
        return img.filter(ImageFilter.GaussianBlur(radius=radius))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(sigma={self.sigma})"


def _augmented(
    height: int, width: int, erasing_fill: str, blur: float, erasing: float
) -> T.Compose:
    if erasing_fill not in ERASING_FILLS:
        raise ValueError(
            f"erasing_fill must be one of {', '.join(ERASING_FILLS)}, found {erasing_fill!r}"
        )
    fill = ERASING_FILLS[erasing_fill]
    blurring = [T.RandomApply([RandomGaussianBlur()], p=blur)] if blur else []
    return T.Compose(
        [
            T.Resize((height, width), interpolation=InterpolationMode.BICUBIC),
            T.RandomHorizontalFlip(p=0.5),
            T.Pad(10),
            T.RandomCrop((height, width)),
            *blurring,
            T.ToTensor(),
            T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
            T.RandomErasing(p=erasing, scale=(0.02, 0.4), ratio=(0.3, 3.3), value=fill),
        ]
    )


def test_transform(height: int, width: int) -> T.Compose:
    return T.Compose(
        [
            T.Resize((height, width), interpolation=InterpolationMode.BICUBIC),
            T.ToTensor(),
            T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


Transform = Callable[[Image.Image], torch.Tensor]

VIEWS: dict[str, Callable[[int, int, str], Transform]] = {
    "train": train_transform,
    "strong": strong_transform,
    "weak": lambda height, width, erasing_fill: test_transform(height, width),
}
"""Training views by name: (height, width, erasing_fill) -> transform."""


def view_transforms(
    names: Sequence[str], height: int, width: int, erasing_fill: str = "zero"
) -> list[Transform]:
    """The transforms of the named views, in order (a name may repeat: two draws)."""
    unknown = [n for n in names if n not in VIEWS]
    if unknown:
        raise ValueError(f"unknown view {unknown[0]!r}; available: {', '.join(VIEWS)}")
    return [VIEWS[n](height, width, erasing_fill) for n in names]
