"""The re-ID parts around timm's blocks: patch grids, pixel maps, camera embeddings, necks.

Each is checked against its definition, computed here from the trunk's own weights.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from unreid.errors import ConfigError
from unreid.models import vit as vit_module
from unreid.models.reid_model import build_model
from unreid.models.vit import PIXEL_STATS, camera_ids, grid_size
from unreid.settings import ModelConfig


@pytest.fixture(autouse=True)
def two_blocks(monkeypatch):
    for name, spec in list(vit_module.VIT_SPECS.items()):
        monkeypatch.setitem(vit_module.VIT_SPECS, name, replace(spec, depth=2))


def vit(size=(64, 32), cams=0, **kw):
    cfg = ModelConfig(arch=kw.pop("arch", "vit_tiny"), pretrained="none", **kw)
    return build_model(cfg, size, cams).eval()


@pytest.mark.parametrize(
    ("size", "stride", "grid"),
    [((256, 128), 16, (16, 8)), ((256, 128), 12, (21, 10)), ((384, 128), 12, (31, 10))],
)
def test_patch_grid_is_transreids(size, stride, grid):
    assert grid_size(*size, 16, stride) == grid
    model = vit(size, patch_stride=stride)
    assert model.trunk.patch_embed(torch.randn(1, 3, *size)).shape[1] == grid[0] * grid[1]
    assert model.trunk.pos_embed.shape[1] == grid[0] * grid[1] + 1


def test_wrong_input_size_and_ics_stride_are_refused():
    with pytest.raises(ValueError, match="built for 64x32 images"):
        vit()(torch.randn(1, 3, 128, 64))
    with pytest.raises(ConfigError, match="patch_stride.*16 with model.stem=ics"):
        ModelConfig(arch="vit_small", stem="ics", patch_stride=12)


@pytest.mark.parametrize("family", ["half", "luperson", "clip"])
def test_pixel_map_equals_normalising_with_the_familys_statistics(family):
    """The pipeline's ImageNet-normalised input, mapped inside the model, is the raw image
    normalised with the family's mean and std."""
    ours = vit(pixel_norm=family)
    plain = vit(pixel_norm="imagenet")
    plain.load_state_dict(ours.state_dict())
    raw = torch.rand(2, 3, 64, 32)
    (im_mean, im_std), (mean, std) = PIXEL_STATS["imagenet"], PIXEL_STATS[family]
    view = (1, 3, 1, 1)

    def normalise(x, m, s):
        return (x - torch.tensor(m).view(view)) / torch.tensor(s).view(view)

    with torch.no_grad():
        torch.testing.assert_close(
            ours(normalise(raw, im_mean, im_std)), plain(normalise(raw, mean, std)), atol=1e-5,
            rtol=1e-5,
        )  # fmt: skip


def test_auto_pixel_norm_is_the_weight_familys():
    assert torch.allclose(
        vit(arch="vit_small").pixel_scale.flatten(), torch.tensor([0.458, 0.448, 0.45])
    )
    clip = vit(arch="clip_vit_b16")
    expected = torch.tensor(PIXEL_STATS["imagenet"][1]) / torch.tensor(PIXEL_STATS["clip"][1])
    torch.testing.assert_close(clip.pixel_scale.flatten(), expected)


def reference_tokens(model, x, cams, mode, coef):
    """Tokens by the definition: [cls; patches] + pos, plus coef * E[camera] on every token
    (TransReID) or on the class token only (CLIP-ReID), then the blocks."""
    t = model.trunk
    x = t.patch_embed(x * model.pixel_scale + model.pixel_shift)
    x = torch.cat([t.cls_token.expand(len(x), -1, -1), x], 1) + t.pos_embed
    side = coef * model.camera_embed[cams]
    if mode == "all_tokens":
        x = x + side[:, None, :]
    else:
        x = x.clone()
        x[:, 0] = x[:, 0] + side
    return t.norm(t.blocks(t.norm_pre(x)))


@pytest.mark.parametrize(("mode", "coef"), [("all_tokens", 3.0), ("cls_token", 1.0)])
def test_camera_embedding_by_its_definition(mode, coef):
    model = vit(cams=4, camera_embedding=mode, camera_coef=coef)
    assert model.camera_embed.shape == (4, 192)
    x, cams = torch.randn(3, 3, 64, 32), torch.tensor([0, 3, 1])
    with torch.no_grad(), camera_ids(model, cams):
        got = model.tokens(x)
    with torch.no_grad():
        torch.testing.assert_close(got, reference_tokens(model, x, cams, mode, coef))
        with camera_ids(model, torch.tensor([2, 2, 2])):
            assert not torch.allclose(model.tokens(x), got)  # the camera matters
    assert model.cameras is None  # restored after the block


def test_camera_embedding_needs_valid_camera_ids():
    model = vit(cams=2, camera_embedding="all_tokens")
    x = torch.randn(2, 3, 64, 32)
    with pytest.raises(RuntimeError, match="pass the images' camera ids"):
        model(x)
    with (
        pytest.raises(ValueError, match=r"camera ids 0\.\.5 outside the 2 cameras"),
        camera_ids(model, torch.tensor([0, 5])),
    ):
        model(x)
    with pytest.raises(ValueError, match="needs camera ids"):
        vit(cams=0, camera_embedding="cls_token")


def test_camera_ids_leave_other_models_alone():
    resnet = build_model(ModelConfig(arch="resnet18", pretrained="none")).eval()
    x = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        before = resnet(x)
        with camera_ids(resnet, torch.tensor([0, 1])):
            torch.testing.assert_close(resnet(x), before)


def test_clip_embedding_is_both_bn_necks_concatenated_and_normalised():
    model = vit(arch="clip_vit_b16")
    for bn in (model.neck, model.proj_neck):  # non-trivial statistics and weights
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2)
        bn.weight.data.uniform_(0.5, 2)
    x = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        cls, proj = model.trunk_features(x)
        assert cls.shape == (2, 768) and proj.shape == (2, 512)
        torch.testing.assert_close(proj, cls @ model.trunk.head.weight.t())

        def bn(v, m):
            return (v - m.running_mean) / torch.sqrt(m.running_var + m.eps) * m.weight + m.bias

        expected = F.normalize(torch.cat([bn(cls, model.neck), bn(proj, model.proj_neck)], 1))
        torch.testing.assert_close(model(x), expected, atol=1e-5, rtol=1e-5)


def test_neck_bias_frozen_patch_projection_frozen_on_request_and_drop_path_set():
    model = vit(freeze_patch_embed=True, drop_path=0.3)
    assert not model.neck.bias.requires_grad and model.neck.weight.requires_grad
    assert not any(p.requires_grad for p in model.trunk.patch_embed.proj.parameters())
    assert model.trunk.cls_token.requires_grad and model.trunk.pos_embed.requires_grad
    rates = [getattr(b.drop_path1, "drop_prob", 0.0) for b in model.trunk.blocks]
    assert rates == pytest.approx([0.0, 0.3])  # timm's linear rule over the blocks


def test_transformer_options_are_reported_ignored_on_resnets_and_vice_versa():
    assert "patch_stride" in ModelConfig(arch="resnet50").ignored()
    ignored = ModelConfig(arch="vit_small").ignored()
    assert {"pooling", "last_stride", "camera_coef"} <= set(ignored)
    assert "patch_stride" not in ignored
