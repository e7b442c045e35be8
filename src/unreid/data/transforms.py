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
"""

from __future__ import annotations

import torchvision.transforms as T
from torchvision.transforms import InterpolationMode

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

ERASING_FILLS = {"zero": 0.0, "reference": IMAGENET_MEAN}
"""Value written into the erased rectangle of the normalised tensor, per fill name."""


def train_transform(height: int, width: int, erasing_fill: str = "zero") -> T.Compose:
    if erasing_fill not in ERASING_FILLS:
        raise ValueError(
            f"erasing_fill must be one of {', '.join(ERASING_FILLS)}, found {erasing_fill!r}"
        )
    fill = ERASING_FILLS[erasing_fill]
    return T.Compose(
        [
            T.Resize((height, width), interpolation=InterpolationMode.BICUBIC),
            T.RandomHorizontalFlip(p=0.5),
            T.Pad(10),
            T.RandomCrop((height, width)),
            T.ToTensor(),
            T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
            T.RandomErasing(p=0.5, scale=(0.02, 0.4), ratio=(0.3, 3.3), value=fill),
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
