"""The re-ID embedding network: ResNet trunk, last stride 1, global pooling, BN neck, L2 norm.

Last stride 1 doubles the final feature map (16×8 for 256×128 input), which
every reference recipe uses. The BatchNorm neck has a frozen bias, as in the
reference code, and the output is L2-normalised in training and evaluation so
memory banks and retrieval see the same unit vectors. Trunks come from the
`BACKBONES` registry (`backbones.py`); all are torchvision `ResNet`s (IBN-ResNet-50-a
is torchvision's ResNet-50 with IBN norms), so the stride and feature-map code below
serves every one of them.
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from unreid.models.backbones import BACKBONES
from unreid.models.dsbn import convert_to_dsbn
from unreid.models.pooling import POOLINGS
from unreid.models.vit import VitReidModel
from unreid.models.weights import load_backbone_weights, read_state_dict
from unreid.settings import ModelConfig

__all__ = ["ReidModel", "build_model", "model_for_state", "set_last_stride"]


def set_last_stride(net: ResNet, stride: int) -> None:
    """Where the stride lives differs: conv2 in a Bottleneck, conv1 in a BasicBlock."""
    block = net.layer4[0]
    if isinstance(block, Bottleneck):
        block.conv2.stride = (stride, stride)
    elif isinstance(block, BasicBlock):
        block.conv1.stride = (stride, stride)
    else:  # pragma: no cover - only torchvision ResNets are built here
        raise TypeError(f"unsupported block type {type(block).__name__}")
    if block.downsample is not None:
        block.downsample[0].stride = (stride, stride)


class ReidModel(nn.Module):
    """Images -> unit embeddings, the same in training and evaluation (see the module doc)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        entry = BACKBONES.get(cfg.arch)  # unknown names fail here, listing the known ones
        make_pool = POOLINGS.get(cfg.pooling)
        if cfg.last_stride not in (1, 2):
            raise ValueError(f"model.last_stride must be 1 or 2, got {cfg.last_stride}")
        self.backbone = entry.factory(weights=None)
        if cfg.pretrained == "imagenet":
            load_backbone_weights(self.backbone, entry.imagenet(), "imagenet")
        elif cfg.pretrained != "none":
            load_backbone_weights(self.backbone, read_state_dict(cfg.pretrained), cfg.pretrained)
        set_last_stride(self.backbone, cfg.last_stride)
        self.backbone.fc = nn.Identity()
        self.pool = make_pool()
        self.neck = nn.BatchNorm1d(entry.feature_dim)
        nn.init.ones_(self.neck.weight)
        nn.init.zeros_(self.neck.bias)
        self.neck.bias.requires_grad_(False)
        self.feature_dim = entry.feature_dim
        if cfg.dsbn:  # after the weights: both domains start from the same statistics
            convert_to_dsbn(self)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The trunk without its pooling and classifier: where the last stride shows."""
        b = self.backbone
        x = b.maxpool(b.relu(b.bn1(b.conv1(x))))
        return b.layer4(b.layer3(b.layer2(b.layer1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.pool(self.feature_map(x)).flatten(1)
        # unit length in fp32 even under autocast: clustering checks norms to 1e-3
        return F.normalize(self.neck(pooled).float(), dim=1)


def build_model(
    cfg: ModelConfig, size: tuple[int, int] | None = None, num_cameras: int = 0
) -> nn.Module:
    """The embedding network `cfg.arch` names: a ResNet `ReidModel` or a `VitReidModel`.

    A transformer's position table and patch grid are built for one input `size`
    (data.height, data.width); `num_cameras` sizes its camera embedding, if any.
    """
    if BACKBONES.get(cfg.arch).kind == "resnet":
        return ReidModel(cfg)
    if size is None:
        raise ValueError(f"model.arch={cfg.arch} needs the input size (data.height, data.width)")
    model = VitReidModel(cfg, size, num_cameras)
    if cfg.dsbn:  # after the weights, as ReidModel: the neck(s) and any stem BN, per domain
        convert_to_dsbn(model)
    return model


def model_for_state(
    cfg: ModelConfig, size: tuple[int, int], state: dict[str, torch.Tensor]
) -> nn.Module:
    """The network a saved state dict belongs to, random-initialised, ready for its weights.

    The camera table's size is the training set's camera count, which only the saved
    weights still know; nothing is downloaded (the weights come from `state`).
    """
    cams = state["camera_embed"].shape[0] if "camera_embed" in state else 0
    return build_model(replace(cfg, pretrained="none"), size, cams)
