"""The trunks `model.arch` can name, each with its feature width and ImageNet source.

An entry carries everything that differs between trunks, so `ReidModel` has no
per-arch branches: the factory (torchvision's call shape, `factory(weights=None)`),
the width of the pooled feature (the BN neck's size), and where ImageNet weights
come from. torchvision serves the plain ResNets (downloaded into the hub cache on
first use); IBN-ResNet-50-a's weights are not served by torchvision and are read
from the hub cache only (see `ibn_resnet.py`), which is just another `imagenet`
callable here. All three are torchvision `ResNet`s, which the last-stride and
feature-map code in `reid_model.py` relies on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from torchvision.models import ResNet18_Weights, ResNet50_Weights, resnet18, resnet50
from torchvision.models.resnet import ResNet

from unreid.models.ibn_resnet import ibn_a_imagenet_state_dict, resnet50_ibn_a
from unreid.models.weights import imagenet_state_dict
from unreid.registry import Registry

__all__ = ["BACKBONES", "Backbone", "list_backbones"]


@dataclass(frozen=True)
class Backbone:
    """How to build one trunk and get its ImageNet weights."""

    factory: Callable[..., ResNet]  # called as factory(weights=None): random init
    feature_dim: int  # channels of the last feature map = pooled feature width
    imagenet: Callable[[], dict[str, torch.Tensor]]  # the ImageNet state dict, or raises


BACKBONES: Registry[Backbone] = Registry("backbone")

# V1 weights: the ones `resnet50(pretrained=True)` gave the reference code.
BACKBONES.register(
    "resnet18",
    Backbone(resnet18, 512, partial(imagenet_state_dict, ResNet18_Weights.IMAGENET1K_V1)),
)
BACKBONES.register(
    "resnet50",
    Backbone(resnet50, 2048, partial(imagenet_state_dict, ResNet50_Weights.IMAGENET1K_V1)),
)
BACKBONES.register("resnet50_ibn_a", Backbone(resnet50_ibn_a, 2048, ibn_a_imagenet_state_dict))


def list_backbones() -> list[str]:
    """The names `model.arch` accepts."""
    return BACKBONES.names()
