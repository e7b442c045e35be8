"""Domain-specific BN: rows before the split take the source copy, the rest the target copy."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch
from torch import nn

from unreid.models import vit as vit_module
from unreid.models.dsbn import ALL_ROWS, DomainSpecificBatchNorm, convert_to_dsbn, source_rows
from unreid.models.reid_model import build_model, model_for_state
from unreid.models.vit import camera_ids
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


@pytest.mark.parametrize("arch", ["vit_small", "clip_vit_b16"])
def test_transformer_dsbn_normalises_each_domain_as_its_own_batch(arch, monkeypatch):
    """model.dsbn=true splits a ViT's BNs (neck, CLIP's projection neck, the ICS stem's);
    every other layer works per image, so the source rows of a mixed batch come out as a
    batch of source rows alone through the source copies, the target rows likewise."""
    spec = vit_module.VIT_SPECS[arch]
    monkeypatch.setitem(vit_module.VIT_SPECS, arch, replace(spec, depth=2))
    torch.manual_seed(0)
    stem = "ics" if arch == "vit_small" else "patch"
    cams = {"camera_embedding": "cls_token"}  # camera ids ride along, as in training
    cfg = ModelConfig(arch=arch, pretrained="none", stem=stem, dsbn=True, **cams)
    model = build_model(cfg, (64, 32), num_cameras=2).train()
    pairs = [m for m in model.modules() if isinstance(m, DomainSpecificBatchNorm)]
    assert len(pairs) == (4 if stem == "ics" else 2)
    assert any(isinstance(m, nn.BatchNorm1d) for m in model.neck.target.modules()) is not False
    assert not model.neck.source.bias.requires_grad  # the neck's frozen bias stays frozen
    src, tgt = torch.randn(4, 3, 64, 32) * 2 + 1, torch.randn(6, 3, 64, 32)
    cams = torch.tensor([0, 1, 0, 1, 1, 0, 1, 0, 0, 1])
    alone_s, alone_t = copy.deepcopy(model), copy.deepcopy(model)
    with camera_ids(model, cams), source_rows(model, 4):
        out = model(torch.cat([src, tgt]))
    with camera_ids(alone_s, cams[:4]), source_rows(alone_s, ALL_ROWS):
        torch.testing.assert_close(out[:4], alone_s(src), atol=1e-5, rtol=1e-5)
    with camera_ids(alone_t, cams[4:]):
        torch.testing.assert_close(out[4:], alone_t(tgt), atol=1e-5, rtol=1e-5)
    state = model.state_dict()
    assert "neck.source.running_mean" in state and "neck.target.running_mean" in state
    source_mean = state["neck.source.running_mean"]
    torch.testing.assert_close(source_mean, alone_s.state_dict()["neck.source.running_mean"])
    assert not torch.allclose(source_mean, state["neck.target.running_mean"])
    rebuilt = model_for_state(cfg, (64, 32), state)  # what load_model and eval build
    rebuilt.load_state_dict(state)  # strict: the same DSBN layout, the same camera table


def test_dsbn_from_plain_pretrained_weights_starts_both_domains_from_its_bn(tmp_path):
    """What `--regime pretrained` gives an adaptation row with model.dsbn=true: a plain
    network's checkpoint (an unreid run's last.pth) fills both copies of every BN, so
    before any training the DSBN model computes the plain model's features in either
    domain."""
    torch.manual_seed(0)
    plain = build_model(ModelConfig(arch="resnet18", pretrained="none"))
    for m in plain.modules():  # statistics and affine terms unlike a fresh BN's
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 2.0)
            m.num_batches_tracked.fill_(7)
            with torch.no_grad():
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
    path = tmp_path / "last.pth"
    torch.save({"model": plain.state_dict()}, path)
    loaded = build_model(ModelConfig(arch="resnet18", pretrained=str(path)))
    dsbn = build_model(ModelConfig(arch="resnet18", pretrained=str(path), dsbn=True))
    pairs = {n: m for n, m in dsbn.named_modules() if isinstance(m, DomainSpecificBatchNorm)}
    backbone_bns = {
        n: m for n, m in plain.named_modules()
        if isinstance(m, nn.BatchNorm2d) and n.startswith("backbone.")
    }  # fmt: skip
    assert set(backbone_bns) < set(pairs) and "neck" in pairs
    for name, bn in backbone_bns.items():  # the weights' BN, in both copies
        for copy_ in (pairs[name].source, pairs[name].target):
            for key, value in bn.state_dict().items():
                assert torch.equal(copy_.state_dict()[key], value), (name, key)
    for key, value in loaded.neck.state_dict().items():  # the neck: fresh, as in the plain one
        assert torch.equal(pairs["neck"].source.state_dict()[key], value)
        assert torch.equal(pairs["neck"].target.state_dict()[key], value)
    images = torch.randn(4, 3, 64, 32)
    loaded.eval(), dsbn.eval()
    with torch.no_grad():
        expected = loaded(images)
        assert torch.equal(dsbn(images), expected)  # target copies
        with source_rows(dsbn, ALL_ROWS):
            assert torch.equal(dsbn(images), expected)  # source copies
        with source_rows(dsbn, 2):
            assert torch.equal(dsbn(images), expected)  # a mixed batch
