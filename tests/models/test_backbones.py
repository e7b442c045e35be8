"""Every registered backbone builds, gives unit features of its declared width, and honours
the last stride; the registry itself lists and rejects names.

Each backbone is built at 64x32 (cheap even for ResNet-50 on CPU), once per last stride.
"""

from __future__ import annotations

import pytest
import torch

from unreid.models import BACKBONES, list_backbones
from unreid.models.reid_model import build_model
from unreid.settings import ModelConfig


def test_known_backbones_and_their_widths():
    widths = {name: BACKBONES.get(name).feature_dim for name in list_backbones()}
    assert widths == {
        "resnet18": 512, "resnet50": 2048, "resnet50_ibn_a": 2048,
        "vit_tiny": 192, "vit_small": 384, "vit_base": 768,
        "clip_vit_b16": 768 + 512,  # PCL-CLIP: BN'd class token and BN'd projection
    }  # fmt: skip


def test_unknown_backbone_lists_the_available_ones():
    with pytest.raises(
        ValueError, match="available: clip_vit_b16, resnet18, resnet50, resnet50_ibn_a, vit_"
    ):
        BACKBONES.get("resnet34")


RESNETS = [n for n in list_backbones() if BACKBONES.get(n).kind == "resnet"]
TRANSFORMERS = [n for n in list_backbones() if BACKBONES.get(n).kind == "transformer"]


@pytest.mark.parametrize("name", RESNETS)
def test_backbone_gives_unit_features_of_its_width_at_both_last_strides(name):
    dim = BACKBONES.get(name).feature_dim
    x = torch.randn(2, 3, 64, 32)
    model = build_model(ModelConfig(arch=name, pretrained="none")).eval()
    assert model.feature_dim == dim
    assert model.feature_map(x).shape == (2, dim, 4, 2)  # 64/16 × 32/16 with last stride 1
    out = model(x)
    assert out.shape == (2, dim)
    assert torch.allclose(out.norm(dim=1), torch.ones(2), atol=1e-5)
    strided = build_model(ModelConfig(arch=name, pretrained="none", last_stride=2)).eval()
    assert strided.feature_map(x).shape == (2, dim, 2, 1)


@pytest.mark.parametrize("name", TRANSFORMERS)
def test_transformer_gives_unit_features_of_its_width(name):
    dim = BACKBONES.get(name).feature_dim
    model = build_model(ModelConfig(arch=name, pretrained="none"), (64, 32)).eval()
    assert model.feature_dim == dim
    out = model(torch.randn(2, 3, 64, 32))
    assert out.shape == (2, dim)
    assert torch.allclose(out.norm(dim=1), torch.ones(2), atol=1e-5)


def test_listing_names_every_backbone_with_its_weight_families():
    from unreid.models import describe_backbones

    lines = describe_backbones()
    assert [line.split()[0] for line in lines] == list_backbones()
    assert any(line.startswith("vit_small") and "lup" in line for line in lines)
    assert any(line.startswith("clip_vit_b16") and "openai" in line for line in lines)
