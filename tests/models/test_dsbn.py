"""Domain-specific BN: rows before the split take the source copy, the rest the target copy."""

from __future__ import annotations

import copy

import torch
from torch import nn

from unreid.models.dsbn import ALL_ROWS, DomainSpecificBatchNorm, convert_to_dsbn, source_rows
from unreid.models.reid_model import build_model
from unreid.settings import ModelConfig


def test_split_batch_normalises_each_domain_with_its_own_statistics():
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(3)
    layer = DomainSpecificBatchNorm(bn)
    ref_s, ref_t = copy.deepcopy(bn), copy.deepcopy(bn)
    src = torch.randn(4, 3, 5, 5) * 3 + 2
    tgt = torch.randn(6, 3, 5, 5) - 1
    layer.train()
    with source_rows(layer, 4):
        out = layer(torch.cat([src, tgt]))
    torch.testing.assert_close(out[:4], ref_s(src))
    torch.testing.assert_close(out[4:], ref_t(tgt))
    torch.testing.assert_close(layer.source.running_mean, ref_s.running_mean)
    torch.testing.assert_close(layer.target.running_mean, ref_t.running_mean)
    assert not torch.allclose(layer.source.running_mean, layer.target.running_mean)
    layer.eval()  # outside the context everything is target; ALL_ROWS is all source
    torch.testing.assert_close(layer(src), ref_t.eval()(src))
    with source_rows(layer, ALL_ROWS):
        torch.testing.assert_close(layer(src), ref_s.eval()(src))
    assert layer.source_rows == 0  # restored


def test_reid_model_converts_every_bn_and_keeps_weights_and_frozen_neck_bias():
    model = build_model(ModelConfig(arch="resnet18", pretrained="none"))
    n_bn = sum(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in model.modules())
    conv_w = model.backbone.conv1.weight.clone()
    assert convert_to_dsbn(model) == n_bn
    for name, m in model.named_modules():  # every BN now lives inside a DSBN pair
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            assert name.endswith((".source", ".target")), name
    assert torch.equal(model.backbone.conv1.weight, conv_w)
    assert not model.neck.source.bias.requires_grad and not model.neck.target.bias.requires_grad
    keys = model.state_dict().keys()
    assert "neck.source.running_mean" in keys and "backbone.bn1.target.weight" in keys
    model.train()
    with source_rows(model, 2):
        out = model(torch.randn(4, 3, 64, 32))
    assert out.shape == (4, 512)
