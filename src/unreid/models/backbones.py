"""The trunks `model.arch` can name, each with its feature width and ImageNet source.

An entry carries everything that differs between trunks, so `ReidModel` has no
per-arch branches: the factory (torchvision's call shape, `factory(weights=None)`),
the width of the pooled feature (the BN neck's size), and where ImageNet weights
come from. torchvision serves the plain ResNets (downloaded into the hub cache on
first use); IBN-ResNet-50-a's weights are not served by torchvision and are read
from the hub cache only (see `ibn_resnet.py`), which is just another `imagenet`
callable here. All three are torchvision `ResNet`s, which the last-stride and
feature-map code in `reid_model.py` relies on.

Transformer entries (`kind="transformer"`: ViT-S/16, ViT-B/16, CLIP ViT-B/16) are built
by `vit.py` from their `VitSpec`; their weights are named families (`weights`), read
from a file or the hub by `vit_weights.py`, so they carry no factory or ImageNet callable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from torchvision.models import ResNet18_Weights, ResNet50_Weights, resnet18, resnet50
from torchvision.models.resnet import ResNet

from unreid.models.ibn_resnet import ibn_a_imagenet_state_dict, resnet50_ibn_a
from unreid.models.vit import VIT_SPECS
from unreid.models.weights import imagenet_state_dict
from unreid.registry import Registry

__all__ = ["BACKBONES", "Backbone", "describe_backbones", "list_backbones"]


@dataclass(frozen=True)
class Backbone:
    """How to build one trunk and get its pretrained weights."""

    factory: Callable[..., ResNet] | None  # called as factory(weights=None): random init
    feature_dim: int  # the embedding width (a ResNet's pooled channels)
    imagenet: Callable[[], dict[str, torch.Tensor]] | None  # the ImageNet state dict, or raises
    kind: str = "resnet"  # "resnet" (reid_model.ReidModel) or "transformer" (vit.VitReidModel)
    weights: str = "imagenet (torchvision), none, /path"  # what model.pretrained may name


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
BACKBONES.register(
    "resnet50_ibn_a",
    Backbone(
        resnet50_ibn_a, 2048, ibn_a_imagenet_state_dict,
        weights="imagenet (IBN-Net release, hub cache only), none, /path",
    ),
)  # fmt: skip
_VIT_WEIGHTS = {
    "vit_tiny": "imagenet (timm hub), none, /path",
    "vit_small": "lup (TransReID-SSL file: vit_small[_ics]_cfs_lup.pth), imagenet (timm hub), "
    "none, /path",
    "vit_base": "lup (TransReID-SSL file: vit_base_ics_cfs_lup.pth), imagenet (timm hub, "
    "jx_vit_base_p16_224), none, /path",
    "clip_vit_b16": "openai (timm hub; or OpenAI ViT-B-16.pt / open_clip file), none, /path",
}
for _name, _spec in VIT_SPECS.items():
    BACKBONES.register(
        _name, Backbone(None, _spec.feature_dim, None, "transformer", _VIT_WEIGHTS[_name])
    )


def list_backbones() -> list[str]:
    """The names `model.arch` accepts."""
    return BACKBONES.names()


def describe_backbones() -> list[str]:
    """`unreid list backbones`: each name, its embedding width and its weight families."""
    width = max(map(len, BACKBONES.names()))
    return [
        f"{n:<{width}}  {BACKBONES.get(n).feature_dim:>4}-d  {BACKBONES.get(n).weights}"
        for n in BACKBONES.names()
    ]
