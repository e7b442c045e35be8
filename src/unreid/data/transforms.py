"""Train and test image transforms, as every reference recipe uses them.

Train: resize (bicubic), flip, pad 10 + random crop, ImageNet normalisation,
random erasing 0.5. Erased pixels are 0 after normalisation, i.e. the ImageNet
mean colour, which is what the reference's mean-filled erasing produces.
"""

from __future__ import annotations

import torchvision.transforms as T
from torchvision.transforms import InterpolationMode

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def train_transform(height: int, width: int) -> T.Compose:
    return T.Compose(
        [
            T.Resize((height, width), interpolation=InterpolationMode.BICUBIC),
            T.RandomHorizontalFlip(p=0.5),
            T.Pad(10),
            T.RandomCrop((height, width)),
            T.ToTensor(),
            T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
            T.RandomErasing(p=0.5, scale=(0.02, 0.4), ratio=(0.3, 3.3), value=0),
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
