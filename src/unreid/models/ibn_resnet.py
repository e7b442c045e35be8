"""IBN-ResNet-50-a: torchvision's ResNet-50 with Instance-Batch Normalization in layers 1-3.

IBN-Net (Pan et al., ECCV 2018), variant "a": in every Bottleneck of layer1, layer2 and
layer3 the norm after conv1 normalises the first half of the channels per image
(InstanceNorm, affine) and the rest over the batch (BatchNorm). Instance statistics remove
per-image style (colour cast, contrast), which is why re-ID methods use this backbone for
cross-camera and cross-domain robustness; layer4 and the stem stay plain BatchNorm.

Layout facts, read from the authors' code (XingangPan/IBN-Net `ibnnet/modules.py`,
`ibnnet/resnet_ibn.py`) and matched by Cluster Contrast's copy: the IBN module's children
are named `IN` then `BN` (keys `layerL.B.bn1.IN.weight`, `layerL.B.bn1.BN.running_mean`),
the IN part takes channels [0, int(planes * 0.5)), the stem is conv 7x7 + BatchNorm, the
3x3 conv carries the stride (as in torchvision), and the classifier is `fc` (1000 classes).
Everything else is torchvision's ResNet-50, so the published file loads key for key and
`ReidModel`'s stride / feature-map code needs no IBN case.

torchvision does not host IBN weights, and the authors' file lives on GitHub releases, so
`model.pretrained=imagenet` reads it from the torch hub cache only: no download is tried
(a blocked route would otherwise stall for minutes), and a missing file is an immediate
error saying where to get it and where to put it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision.models import resnet50
from torchvision.models.resnet import Bottleneck, ResNet

from unreid.models.weights import PretrainedWeightsError, hub_cache_path, read_state_dict

IBN_A_RESNET50_URL = (
    "https://github.com/XingangPan/IBN-Net/releases/download/v1.0/resnet50_ibn_a-d9d0bb7b.pth"
)
IBN_LAYERS = ("layer1", "layer2", "layer3")
IN_RATIO = 0.5


class IBN(nn.Module):
    """InstanceNorm on the first `int(planes * ratio)` channels, BatchNorm on the rest.

    The child names `IN` and `BN` are the published checkpoint's key names; renaming them
    would break loading the authors' ImageNet weights.
    """

    def __init__(self, planes: int, ratio: float = IN_RATIO) -> None:
        super().__init__()
        self.half = int(planes * ratio)
        if not 0 < self.half < planes:
            raise ValueError(f"IBN: {planes} channels at ratio {ratio} leave one part empty")
        self.IN = nn.InstanceNorm2d(self.half, affine=True)
        self.BN = nn.BatchNorm2d(planes - self.half)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, rest = torch.split(x, [self.half, x.shape[1] - self.half], dim=1)
        return torch.cat((self.IN(first.contiguous()), self.BN(rest.contiguous())), dim=1)


def resnet50_ibn_a(weights: None = None) -> ResNet:
    """Randomly initialised IBN-ResNet-50-a; same call shape as torchvision's factories.

    Weights are loaded by the caller (`ReidModel`) so every backbone goes through the same
    key check; passing torchvision weights here would be meaningless, hence only None.
    """
    if weights is not None:
        raise ValueError("resnet50_ibn_a: torchvision has no IBN weights; load them separately")
    net = resnet50(weights=None)
    for name in IBN_LAYERS:
        for block in getattr(net, name):
            if not isinstance(block, Bottleneck):  # pragma: no cover - resnet50 is all Bottleneck
                raise TypeError(f"resnet50_ibn_a: unexpected block {type(block).__name__}")
            block.bn1 = IBN(block.bn1.num_features)
    return net


def ibn_a_cache_path() -> Path:
    """Where torch.hub would have saved the authors' file (and where we look for it)."""
    return hub_cache_path(IBN_A_RESNET50_URL)


def ibn_a_imagenet_state_dict() -> dict[str, torch.Tensor]:
    """The authors' ImageNet weights from the hub cache; no download is attempted."""
    cached = ibn_a_cache_path()
    if not cached.is_file():
        raise PretrainedWeightsError(
            "ImageNet weights for resnet50_ibn_a are not in the torch hub cache "
            "(torchvision does not provide them and they are not downloaded automatically).\n"
            f"  wanted: {IBN_A_RESNET50_URL}\n"
            f"  cache:  {cached}\n"
            "Fix: download that file (e.g. `curl -L -o <cache path> <url>`) and place it at the "
            "cache path, or set model.pretrained=/path/to/resnet50_ibn_a.pth, or "
            "model.pretrained=none for random init."
        )
    return read_state_dict(cached)
