"""ReidModel's own choices: the frozen neck bias and name checks before anything is built.

Shapes, unit norm and last stride are checked for every backbone in `test_backbones.py`;
weight loading in `test_weights.py`.
"""

from __future__ import annotations

import pytest

from unreid.models.reid_model import build_model
from unreid.registry import UnknownNameError
from unreid.settings import ModelConfig


def test_neck_bias_is_frozen():
    model = build_model(ModelConfig(arch="resnet18", pretrained="none"))
    assert not model.neck.bias.requires_grad and model.neck.weight.requires_grad


def test_unknown_pooling_fails_before_any_weights_are_read(tmp_path):
    """A typo in model.pooling is reported as such, not as a missing weights file."""
    cfg = ModelConfig(arch="resnet18", pretrained=str(tmp_path / "absent.pth"), pooling="median")
    with pytest.raises(UnknownNameError, match="available: avg, gem, max"):
        build_model(cfg)
