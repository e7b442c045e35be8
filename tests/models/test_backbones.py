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
    assert widths == {"resnet18": 512, "resnet50": 2048, "resnet50_ibn_a": 2048}


def test_unknown_backbone_lists_the_available_ones():
    with pytest.raises(ValueError, match="available: resnet18, resnet50, resnet50_ibn_a"):
        BACKBONES.get("resnet34")


@pytest.mark.parametrize("name", list_backbones())
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
