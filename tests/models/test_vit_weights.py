"""Every weight layout lands where timm / open_clip put the same file: same forward to 1e-5.

Nothing downloads here, so each test writes a checkpoint in a published layout (random
weights, TorchScript included), loads it through `model.pretrained=/path`, and compares
the class token with the library that owns the layout, fed the same file: timm for
TransReID-SSL / DINO / timm files (with timm's own position resampling), open_clip for
OpenAI's TorchScript archive and open_clip state dicts.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import timm
import torch
import torch.nn.functional as F

from unreid.models import vit as vit_module
from unreid.models.reid_model import build_model
from unreid.models.weights import PretrainedWeightsError
from unreid.settings import ModelConfig

DEPTH = 2  # blocks: every block loads by the same rule, and two keep the module fast


@pytest.fixture(autouse=True)
def short_trunks(monkeypatch):
    """vit_small and clip_vit_b16 at their real widths, with DEPTH blocks."""
    for name, spec in list(vit_module.VIT_SPECS.items()):
        monkeypatch.setitem(vit_module.VIT_SPECS, name, replace(spec, depth=DEPTH))


def ours(path: Path | str, size=(256, 128), **kw) -> torch.nn.Module:
    """Our model with the ImageNet pixel map, so both sides see the same input tensor."""
    cfg = ModelConfig(arch=kw.pop("arch", "vit_small"), pretrained=str(path), pixel_norm="imagenet")
    return build_model(replace(cfg, **kw), size).eval()


def cls_token(model, x):
    with torch.no_grad():
        return model.trunk_features(x)[0]


def timm_vit_small(img_size, dynamic=False):
    return timm.create_model(
        "vit_small_patch16_224", pretrained=False, num_classes=0, img_size=img_size,
        dynamic_img_size=dynamic, depth=DEPTH,
    ).eval()  # fmt: skip


def timm_cls(ref, x):
    with torch.no_grad():
        return ref.forward_features(x)[:, 0]


@pytest.fixture(scope="module")
def luperson(tmp_path_factory) -> tuple[Path, dict]:
    """A TransReID-SSL LUPerson file: DINO teacher, `module.backbone.` keys, a 16x8 grid."""
    ref = timm_vit_small((256, 128))
    state = ref.state_dict()
    teacher = {f"module.backbone.{k}": v for k, v in state.items()}
    teacher["module.head.mlp.0.weight"] = torch.randn(8, 384)  # DINO's projection head
    path = tmp_path_factory.mktemp("w") / "vit_small_cfs_lup.pth"
    torch.save({"teacher": teacher, "epoch": 100}, path)
    return path, state


def test_luperson_file_at_its_own_grid_matches_timm(luperson):
    path, state = luperson
    ref = timm_vit_small((256, 128))
    ref.load_state_dict(state)
    x = torch.randn(2, 3, 256, 128)
    torch.testing.assert_close(cls_token(ours(path), x), timm_cls(ref, x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("stride", [16, 12])
def test_luperson_file_resampled_like_timm(luperson, stride):
    """16x8 -> the grid of 224x112 images at stride 16 (14x7) or 12 (18x9): timm resamples
    the table on the fly from the conv's output grid (dynamic_img_size)."""
    path, state = luperson
    ref = timm_vit_small((256, 128), dynamic=True)
    ref.load_state_dict(state)
    ref.patch_embed.proj.stride = (stride, stride)
    x = torch.randn(2, 3, 224, 112)
    ours_cls = cls_token(ours(path, (224, 112), patch_stride=stride), x)
    torch.testing.assert_close(ours_cls, timm_cls(ref, x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("stride", [16, 12])
def test_timm_imagenet_file_resampled_to_256x128(tmp_path, stride):
    """A plain timm state dict at 224 (14x14, e.g. jx_vit_base_p16_224's layout) -> 256x128."""
    ref = timm_vit_small(224, dynamic=True)
    path = tmp_path / "vit_small_patch16_224.pth"
    torch.save({**ref.state_dict(), "head.weight": torch.randn(10, 384)}, path)
    ref.patch_embed.proj.stride = (stride, stride)
    x = torch.randn(2, 3, 256, 128)
    model = ours(path, patch_stride=stride)
    assert model.trunk.patch_embed.grid_size == ((16, 8) if stride == 16 else (21, 10))
    torch.testing.assert_close(cls_token(model, x), timm_cls(ref, x), atol=1e-5, rtol=0)


def test_bilinear_option_is_transreids_resize(luperson):
    """`pos_resample=bilinear`: TransReID's resize_pos_embed, written here from its definition."""
    path, state = luperson
    model = ours(path, patch_stride=12, pos_resample="bilinear")
    grid = state["pos_embed"][0, 1:].reshape(1, 16, 8, -1).permute(0, 3, 1, 2)
    grid = (
        F.interpolate(grid, size=(21, 10), mode="bilinear").permute(0, 2, 3, 1).reshape(1, -1, 384)
    )
    expected = torch.cat([state["pos_embed"][:, :1], grid], dim=1)
    torch.testing.assert_close(model.trunk.pos_embed.data, expected)


def test_ics_stem_keys_and_forward_follow_transreid_ssl(tmp_path):
    """The ICS stem by its definition (7x7/2 conv, IBN, ReLU, 3x3, IBN, ReLU, 3x3, BN, ReLU,
    8x8/8 projection), from a file in the published key layout."""
    src = build_model(ModelConfig(arch="vit_small", pretrained="none", stem="ics"), (256, 128))
    sd = {f"module.backbone.{k}": v for k, v in src.trunk.state_dict().items()}
    for k in ("patch_embed.conv.0.weight", "patch_embed.conv.1.IN.weight",
              "patch_embed.conv.4.BN.running_mean", "patch_embed.conv.7.running_var",
              "patch_embed.proj.weight"):  # fmt: skip
        assert f"module.backbone.{k}" in sd
    for k in list(sd):  # stats a trained stem would have
        if k.endswith(("running_mean", "running_var")):
            sd[k] = torch.rand_like(sd[k]) + (0.5 if k.endswith("var") else 0.0)
    torch.save({"teacher": sd}, tmp_path / "vit_small_ics_cfs_lup.pth")
    model = ours(tmp_path / "vit_small_ics_cfs_lup.pth", stem="ics")
    w = {k.removeprefix("module.backbone.patch_embed."): v for k, v in sd.items()}

    def ibn(x, i):
        a, b = x[:, :32], x[:, 32:]
        a = F.instance_norm(a, weight=w[f"conv.{i}.IN.weight"], bias=w[f"conv.{i}.IN.bias"])
        b = F.batch_norm(b, w[f"conv.{i}.BN.running_mean"], w[f"conv.{i}.BN.running_var"],
                         w[f"conv.{i}.BN.weight"], w[f"conv.{i}.BN.bias"])  # fmt: skip
        return torch.cat([a, b], 1)

    x = torch.randn(2, 3, 256, 128)
    h = F.relu(ibn(F.conv2d(x, w["conv.0.weight"], stride=2, padding=3), 1))
    h = F.relu(ibn(F.conv2d(h, w["conv.3.weight"], padding=1), 4))
    h = F.conv2d(h, w["conv.6.weight"], padding=1)
    h = F.relu(F.batch_norm(h, w["conv.7.running_mean"], w["conv.7.running_var"],
                            w["conv.7.weight"], w["conv.7.bias"]))  # fmt: skip
    tokens = F.conv2d(h, w["proj.weight"], w["proj.bias"], stride=8).flatten(2).transpose(1, 2)
    with torch.no_grad():
        got = model.trunk.patch_embed(x)
    assert got.shape == (2, 128, 384)
    torch.testing.assert_close(got, tokens, atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def small_clip(tmp_path_factory):
    """An OpenAI-layout CLIP with a DEPTH-block ViT-B/16 image tower, as TorchScript and as
    an open_clip state dict. Weights are rounded to fp16 first: open_clip builds OpenAI
    models in fp16 before casting back, which then loses nothing."""
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    model = CLIP(
        embed_dim=512,
        vision_cfg=CLIPVisionCfg(layers=DEPTH, width=768, patch_size=16, image_size=224),
        text_cfg=CLIPTextCfg(context_length=77, vocab_size=49408, width=64, heads=1, layers=1),
        quick_gelu=True,
    ).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())
    model._buffers.pop("attn_mask")  # non-persistent; a trace would store it
    root = tmp_path_factory.mktemp("clip")
    img = torch.randn(1, 3, 224, 224)
    traced = torch.jit.trace_module(model, {"encode_image": img}, check_trace=False)
    torch.jit.save(traced, root / "ViT-B-16.pt")
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}},
               root / "open_clip_epoch_32.pt")  # fmt: skip
    return root


@pytest.mark.parametrize("file", ["ViT-B-16.pt", "open_clip_epoch_32.pt"])
def test_openai_and_open_clip_files_match_open_clip(small_clip, file):
    from open_clip.openai import load_openai_model

    ref = load_openai_model(str(small_clip / "ViT-B-16.pt"), device="cpu").eval()
    x = torch.randn(2, 3, 224, 224)
    model = ours(small_clip / file, (224, 224), arch="clip_vit_b16")
    with torch.no_grad():
        cls, proj = model.trunk_features(x)
        expected = ref.encode_image(x)
    torch.testing.assert_close(proj, expected, atol=1e-5, rtol=0)
    # at 256x128 the table is resampled: timm's CLIP tower resamples the same way on the fly
    tower = timm.create_model(
        "vit_base_patch16_clip_quickgelu_224", pretrained=False, depth=DEPTH, num_classes=512,
        dynamic_img_size=True,
    ).eval()  # fmt: skip
    from timm.models.vision_transformer import checkpoint_filter_fn

    tower.load_state_dict(checkpoint_filter_fn(ref.state_dict(), tower))
    x = torch.randn(2, 3, 256, 128)
    model = ours(small_clip / file, (256, 128), arch="clip_vit_b16")
    with torch.no_grad():
        torch.testing.assert_close(model.trunk_features(x)[1], tower(x), atol=1e-5, rtol=0)


def test_wrong_file_names_missing_unexpected_and_mis_shaped_keys(tmp_path):
    base = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=0, depth=DEPTH)
    torch.save(base.state_dict(), tmp_path / "vit_base.pth")
    with pytest.raises(
        PretrainedWeightsError,
        match=r"30 with other shapes .*blocks\.0\.attn\.proj\.bias \(768,\) vs \(384,\)",
    ):
        ours(tmp_path / "vit_base.pth")  # a ViT-B file into a ViT-S
    sd = timm_vit_small(224).state_dict()
    del sd["blocks.1.mlp.fc2.weight"]
    sd["blocks.2.extra"] = torch.zeros(1)
    torch.save(sd, tmp_path / "cut.pth")
    with pytest.raises(PretrainedWeightsError) as err:
        ours(tmp_path / "cut.pth")
    text = str(err.value)
    assert "cut.pth" in text and "1 missing ['blocks.1.mlp.fc2.weight']" in text
    assert "1 unexpected ['blocks.2.extra']" in text


def test_hub_families_fail_fast_and_say_where_the_file_goes(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(PretrainedWeightsError, match="TransReID-SSL README"):
        build_model(ModelConfig(arch="vit_small", pretrained="lup"), (256, 128))
    with pytest.raises(PretrainedWeightsError, match="not a weight family of vit_small"):
        build_model(ModelConfig(arch="vit_small", pretrained="openai"), (256, 128))
    with pytest.raises(PretrainedWeightsError, match="no such file"):
        build_model(ModelConfig(arch="vit_small", pretrained="/nope.pth"), (256, 128))


def test_a_hand_placed_hub_file_is_read_from_the_cache(monkeypatch, tmp_path):
    from safetensors.torch import save_file

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    ref = timm_vit_small(224, dynamic=True)
    (tmp_path / "checkpoints").mkdir()
    name = "vit_small_patch16_224.augreg_in21k_ft_in1k.safetensors"
    save_file(
        {k: v.contiguous() for k, v in ref.state_dict().items()}, tmp_path / "checkpoints" / name
    )
    x = torch.randn(1, 3, 256, 128)
    model = ours("imagenet")
    torch.testing.assert_close(cls_token(model, x), timm_cls(ref, x), atol=1e-5, rtol=0)
