"""Mixed precision: the forward runs in bf16/fp16, features, weights and steps stay fp32."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch
from torch import nn

from unreid.models import vit as vit_module
from unreid.models.reid_model import build_model
from unreid.models.vit import camera_ids
from unreid.precision import Precision, prepare_model, resolve_amp, set_tf32, to_device
from unreid.settings import ModelConfig


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig(arch="resnet18", pretrained="none")).train()


def conv_dtypes(model: nn.Module) -> tuple[list[torch.dtype], list]:
    seen: list[torch.dtype] = []
    hooks = [
        m.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
        for m in model.modules()
        if isinstance(m, nn.Conv2d)
    ]
    return seen, hooks


def test_auto_is_off_on_cpu_and_follows_bf16_support_on_gpu(monkeypatch):
    assert resolve_amp("auto", "cpu") == "off"
    assert Precision.from_setting("auto", torch.device("cpu")).scaler is None
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_amp("auto", "cuda") == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_amp("auto", "cuda:0") == "fp16"
    with pytest.raises(ValueError, match="train.amp='bf16'.*does not support bf16"):
        resolve_amp("bf16", "cuda")
    assert resolve_amp("bf16", "cpu") == "bf16" and resolve_amp("off", "cuda") == "off"
    with pytest.raises(ValueError, match="train.amp='half'.*auto, bf16, fp16, off"):
        resolve_amp("half", "cpu")


def test_bf16_forward_backward_step_on_cpu_returns_fp32_features(resnet):
    model = copy.deepcopy(resnet)
    precision = Precision.from_setting("bf16", "cpu")
    assert precision.scaler is None and precision.dtype == torch.bfloat16
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(4, 3, 64, 32, generator=torch.Generator().manual_seed(1))
    seen, hooks = conv_dtypes(model)
    features = precision.forward(model, x)
    for h in hooks:
        h.remove()
    assert seen and set(seen) == {torch.bfloat16}  # the convolutions ran in bf16
    assert features.dtype == torch.float32 and torch.isfinite(features).all()
    with torch.no_grad():
        fp32 = copy.deepcopy(resnet)(x)
    # bf16-close, not equal, judged on the unit sphere retrieval ranks on: the largest
    # element error is CPU-dependent (0.053 on an AMD EPYC, under 0.05 elsewhere)
    assert torch.nn.functional.cosine_similarity(features, fp32).min() > 0.99
    assert not torch.equal(features, fp32)
    before = copy.deepcopy(model.state_dict())
    loss = (features * torch.randn_like(features)).sum()
    seen_at_hook = []  # runs after backward, before the step

    def hook() -> None:
        conv = model.backbone.conv1
        seen_at_hook.append(
            (
                conv.weight.grad is not None,
                torch.equal(conv.weight, before["backbone.conv1.weight"]),
            )
        )

    assert precision.backward_step(loss, opt, before_step=hook)
    assert seen_at_hook == [(True, True)]
    moved = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert "backbone.conv1.weight" in moved
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert all(p.grad is None or p.grad.dtype == torch.float32 for p in model.parameters())


def test_fp16_scaler_steps_on_finite_gradients_and_skips_inf_ones():
    torch.manual_seed(2)
    precision = Precision.from_setting("fp16", "cpu")  # GradScaler on CPU: torch >= 2.3
    assert precision.scaler is not None and precision.dtype == torch.float16
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 2))
    reference = copy.deepcopy(model)
    x = torch.randn(8, 6)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    seen, hooks = [], [model[0].register_forward_hook(lambda _m, _i, o: seen.append(o.dtype))]
    out = precision.forward(model, x)
    hooks[0].remove()
    assert seen == [torch.float16] and out.dtype == torch.float32
    scale = precision.scaler.get_scale()
    assert precision.backward_step(out.pow(2).mean(), opt)
    # The step used the unscaled gradient: the same as an fp16-autocast SGD step by hand.
    ref_opt = torch.optim.SGD(reference.parameters(), lr=0.1)
    with torch.autocast("cpu", dtype=torch.float16):
        ref_out = reference(x)
    ref_out.float().pow(2).mean().backward()
    ref_opt.step()
    for p, q in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-3, rtol=0)
    params = [p.detach().clone() for p in model.parameters()]
    bad = precision.forward(model, x).sum() * float("inf")
    assert not precision.backward_step(bad, opt)  # skipped ...
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), params, strict=True))
    assert precision.scaler.get_scale() == scale * 0.5  # ... and the scale backed off
    state = precision.state_dict()
    fresh = Precision.from_setting("fp16", "cpu")
    fresh.load_state_dict(state)
    assert fresh.scaler.get_scale() == scale * 0.5


def test_off_is_plain_fp32():
    precision = Precision.from_setting("off", "cpu")
    model = nn.Linear(3, 2)
    x = torch.randn(4, 3)
    assert torch.equal(precision.forward(model, x), model(x))
    assert precision.state_dict() == {}


def test_channels_last_and_compiled_models_compute_the_same_features(resnet):
    x = torch.randn(2, 3, 64, 32, generator=torch.Generator().manual_seed(3))
    base = copy.deepcopy(resnet).eval()
    with torch.no_grad():
        expected = base(x)
    model = copy.deepcopy(resnet).eval()
    keys = list(model.state_dict())
    runner = prepare_model(model, channels_last=True)
    assert runner is model
    assert model.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    batch = to_device(x, "cpu", channels_last=True)
    assert batch.is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        torch.testing.assert_close(runner(batch), expected, atol=1e-5, rtol=1e-4)
    wrapped = []

    def wrap(m: nn.Module) -> nn.Module:  # sees the channels_last model, as DDP must
        wrapped.append(m.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last))
        return m

    # inductor needs a C compiler and minutes; the eager backend checks the wiring
    compiled = prepare_model(model, True, compile=True, wrap=wrap, backend="eager")
    assert compiled is not model and list(model.state_dict()) == keys and wrapped == [True]
    with torch.no_grad():
        torch.testing.assert_close(compiled(batch), expected, atol=1e-5, rtol=1e-4)


@pytest.fixture
def vit(monkeypatch) -> nn.Module:
    """A 2-block ViT-Ti with a camera embedding (3 cameras), BN neck in training mode."""
    spec = vit_module.VIT_SPECS["vit_tiny"]
    monkeypatch.setitem(vit_module.VIT_SPECS, "vit_tiny", replace(spec, depth=2))
    torch.manual_seed(0)
    cfg = ModelConfig(arch="vit_tiny", pretrained="none", camera_embedding="all_tokens")
    return build_model(cfg, (64, 32), 3).train()


@pytest.mark.parametrize("mode", ["bf16", "fp16"])
def test_transformer_runs_its_blocks_in_reduced_precision_and_steps_in_fp32(vit, mode):
    precision = Precision.from_setting(mode, "cpu")
    x = torch.randn(4, 3, 64, 32, generator=torch.Generator().manual_seed(5))
    cams = torch.tensor([0, 1, 2, 1])
    seen: list[torch.dtype] = []
    hooks = [
        m.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
        for m in vit.modules()
        if isinstance(m, nn.Linear)  # qkv, projections, MLPs of every block
    ]
    with camera_ids(vit, cams):
        features = precision.forward(vit, x)
    for h in hooks:
        h.remove()
    assert len(seen) == 8 and set(seen) == {precision.dtype}
    with torch.no_grad(), camera_ids(vit, cams):
        fp32 = copy.deepcopy(vit)(x)
    assert features.dtype == torch.float32
    torch.testing.assert_close(features, fp32, atol=0.03, rtol=0)  # close, not equal
    torch.testing.assert_close(features.norm(dim=1), torch.ones(4))
    opt = torch.optim.SGD(vit.parameters(), lr=0.1)
    table = vit.camera_embed.detach().clone()
    weights = torch.randn(features.shape, generator=torch.Generator().manual_seed(7))
    skipped = 0  # fp16: the scaler's first scale (2^16) overflows some gradients; it backs off
    while not precision.backward_step((features * weights).sum(), opt):
        assert torch.equal(vit.camera_embed, table) and skipped < 16
        skipped += 1
        with camera_ids(vit, cams):
            features = precision.forward(vit, x)
    assert skipped == 0 or mode == "fp16"
    assert not torch.equal(vit.camera_embed, table)  # the camera rows of the batch learnt
    assert all(p.dtype == torch.float32 for p in vit.parameters())


def test_channels_last_transformer_computes_the_same_features(vit):
    x = torch.randn(2, 3, 64, 32, generator=torch.Generator().manual_seed(6))
    model = vit.eval()
    with torch.no_grad(), camera_ids(model, torch.tensor([0, 2])):
        expected = model(x)
        runner = prepare_model(model, channels_last=True)
        assert model.trunk.patch_embed.proj.weight.is_contiguous(memory_format=torch.channels_last)
        got = runner(to_device(x, "cpu", channels_last=True))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_set_tf32_switches_both_matmul_and_convolution():
    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn.conv
    before = matmul.fp32_precision, conv.fp32_precision
    try:
        set_tf32(True)
        assert (matmul.fp32_precision, conv.fp32_precision) == ("tf32", "tf32")
        set_tf32(False)
        assert (matmul.fp32_precision, conv.fp32_precision) == ("ieee", "ieee")
    finally:
        matmul.fp32_precision, conv.fp32_precision = before
