"""IBN-ResNet-50-a: the IBN block's maths, where it sits, and the published weights layout.

The expected checkpoint layout is written out here independently of the model code (from
the authors' `ibnnet/resnet_ibn.py`), so a model that drifted from it would fail to load.
"""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from unreid.models.ibn_resnet import IBN, IBN_A_RESNET50_URL, resnet50_ibn_a
from unreid.models.reid_model import build_model
from unreid.models.weights import PretrainedWeightsError
from unreid.settings import ModelConfig

EPS = 1e-5  # InstanceNorm2d / BatchNorm2d default


# --------------------------------------------------------------------------- IBN block


def brute_norm(x: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """(x - mean) / sqrt(biased var + eps) over `dims`, one channel at a time, in float64."""
    out = torch.empty_like(x, dtype=torch.float64)
    for c in range(x.shape[1]):
        channel = x[:, c].double()
        if dims == (1, 2):  # per sample
            for n in range(x.shape[0]):
                v = channel[n]
                out[n, c] = (v - v.mean()) / torch.sqrt(((v - v.mean()) ** 2).mean() + EPS)
        else:  # over the whole batch
            out[:, c] = (channel - channel.mean()) / torch.sqrt(
                ((channel - channel.mean()) ** 2).mean() + EPS
            )
    return out


def test_ibn_splits_channels_into_instance_then_batch_norm():
    torch.manual_seed(0)
    ibn = IBN(7)  # odd width: int(7 * 0.5) = 3 instance-normalised, 4 batch-normalised
    assert ibn.half == 3 and ibn.IN.num_features == 3 and ibn.BN.num_features == 4
    with torch.no_grad():
        for norm in (ibn.IN, ibn.BN):
            norm.weight.copy_(torch.rand(norm.num_features) + 0.5)
            norm.bias.copy_(torch.randn(norm.num_features))
    x = torch.randn(4, 7, 5, 3) * 3 + torch.arange(4.0).view(4, 1, 1, 1)  # per-sample offsets
    out = ibn.train()(x)
    assert out.shape == x.shape

    w_in, b_in = ibn.IN.weight.double().view(1, -1, 1, 1), ibn.IN.bias.double().view(1, -1, 1, 1)
    expected_in = brute_norm(x[:, :3], (1, 2)) * w_in + b_in
    w_bn, b_bn = ibn.BN.weight.double().view(1, -1, 1, 1), ibn.BN.bias.double().view(1, -1, 1, 1)
    expected_bn = brute_norm(x[:, 3:], (0, 1, 2)) * w_bn + b_bn
    assert torch.allclose(out[:, :3].double(), expected_in, atol=1e-4)
    assert torch.allclose(out[:, 3:].double(), expected_bn, atol=1e-4)
    # batch statistics really are batch-wide: the BN half differs from per-sample norm
    assert not torch.allclose(out[:, 3:].double(), brute_norm(x[:, 3:], (1, 2)) * w_bn + b_bn)


def test_ibn_instance_half_ignores_other_samples_and_has_no_running_stats():
    torch.manual_seed(1)
    ibn = IBN(8).train()
    x = torch.randn(3, 8, 4, 4)
    y = x.clone()
    y[1:] = y[1:] * 10 + 5  # change every other sample
    a, b = ibn(x), ibn(y)
    assert torch.allclose(a[0, :4], b[0, :4], atol=1e-5)  # IN half of sample 0 unchanged
    assert not torch.allclose(a[0, 4:], b[0, 4:], atol=1e-3)  # BN half sees the batch
    assert ibn.IN.running_mean is None  # IN normalises per image in eval as well
    assert ibn.BN.running_mean.abs().sum() > 0  # BN updated its running statistics


# --------------------------------------------------------------------------- placement


def test_ibn_sits_in_bn1_of_every_bottleneck_of_layers_1_to_3_only():
    net = resnet50_ibn_a()
    ibn_names = sorted(name for name, m in net.named_modules() if isinstance(m, IBN))
    expected = sorted(
        f"layer{layer}.{i}.bn1"
        for layer, blocks in zip((1, 2, 3), (3, 4, 6), strict=True)
        for i in range(blocks)
    )
    assert ibn_names == expected
    for layer, planes in zip((1, 2, 3), (64, 128, 256), strict=True):
        for block in getattr(net, f"layer{layer}"):
            assert block.bn1.half == planes // 2 and block.bn1.BN.num_features == planes // 2
    assert all(type(block.bn1) is nn.BatchNorm2d for block in net.layer4)
    assert type(net.bn1) is nn.BatchNorm2d  # the stem stays plain


def test_unknown_arch_lists_ibn():
    with pytest.raises(ValueError, match="resnet50_ibn_a"):
        build_model(ModelConfig(arch="resnet50_ibn_b", pretrained="none"))


# --------------------------------------------------------------------------- published layout


def bn_keys(prefix: str, width: int) -> dict[str, tuple[int, ...]]:
    shapes = dict.fromkeys(("weight", "bias", "running_mean", "running_var"), (width,))
    return {f"{prefix}.{k}": s for k, s in shapes.items()} | {f"{prefix}.num_batches_tracked": ()}


def published_resnet50_ibn_a_layout() -> dict[str, tuple[int, ...]]:
    """Key -> shape of XingangPan/IBN-Net's resnet50_ibn_a-d9d0bb7b.pth, written from its code."""
    keys: dict[str, tuple[int, ...]] = {"conv1.weight": (64, 3, 7, 7), **bn_keys("bn1", 64)}
    inplanes = 64
    widths = zip((3, 4, 6, 3), (64, 128, 256, 512), strict=True)  # blocks, planes per layer
    for layer, (blocks, planes) in enumerate(widths, start=1):
        for i in range(blocks):
            p = f"layer{layer}.{i}"
            keys[f"{p}.conv1.weight"] = (planes, inplanes, 1, 1)
            if layer <= 3:  # IBN: IN on the first half, BN on the rest
                half = int(planes * 0.5)
                keys[f"{p}.bn1.IN.weight"] = (half,)
                keys[f"{p}.bn1.IN.bias"] = (half,)
                keys |= bn_keys(f"{p}.bn1.BN", planes - half)
            else:
                keys |= bn_keys(f"{p}.bn1", planes)
            keys[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
            keys |= bn_keys(f"{p}.bn2", planes)
            keys[f"{p}.conv3.weight"] = (planes * 4, planes, 1, 1)
            keys |= bn_keys(f"{p}.bn3", planes * 4)
            if i == 0:
                keys[f"{p}.downsample.0.weight"] = (planes * 4, inplanes, 1, 1)
                keys |= bn_keys(f"{p}.downsample.1", planes * 4)
            inplanes = planes * 4
    keys["fc.weight"] = (1000, 2048)
    keys["fc.bias"] = (1000,)
    return keys


def random_state(layout: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    state = {}
    for key, shape in layout.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(12345)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=gen) + 0.5
        else:
            state[key] = torch.randn(shape, generator=gen)
    return state


@pytest.fixture(scope="module")
def published_file(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    state = random_state(published_resnet50_ibn_a_layout())
    path = tmp_path_factory.mktemp("ibn") / "resnet50_ibn_a.pth"
    torch.save(state, path)
    return path, state


def assert_backbone_equals(model, state: dict[str, torch.Tensor]) -> None:
    own = model.backbone.state_dict()
    for key, value in state.items():
        if not key.startswith("fc."):
            assert torch.equal(own[key], value), key


def test_published_layout_loads_tensor_for_tensor(published_file):
    path, state = published_file
    model = build_model(ModelConfig(arch="resnet50_ibn_a", pretrained=str(path)))
    assert_backbone_equals(model, state)
    own = {k for k in model.backbone.state_dict() if not k.startswith("fc.")}
    assert own == {k for k in state if not k.startswith("fc.")}


def test_dataparallel_prefix_is_accepted(published_file, tmp_path):
    _, state = published_file
    path = tmp_path / "wrapped.pth"
    torch.save({f"module.{k}": v for k, v in state.items()}, path)
    model = build_model(ModelConfig(arch="resnet50_ibn_a", pretrained=str(path)))
    assert_backbone_equals(model, state)


def test_file_missing_one_key_names_it(published_file, tmp_path):
    _, state = published_file
    path = tmp_path / "short.pth"
    torch.save({k: v for k, v in state.items() if k != "layer2.1.bn1.IN.weight"}, path)
    with pytest.raises(PretrainedWeightsError, match=r"1 missing.*layer2\.1\.bn1\.IN\.weight"):
        build_model(ModelConfig(arch="resnet50_ibn_a", pretrained=str(path)))


def test_plain_resnet50_weights_do_not_fit(tmp_path):
    path = tmp_path / "r50.pth"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), path)
    with pytest.raises(PretrainedWeightsError, match="do not fit"):
        build_model(ModelConfig(arch="resnet50_ibn_a", pretrained=str(path)))


# --------------------------------------------------------------------------- imagenet (hub cache)


def test_imagenet_without_cached_file_fails_fast_with_instructions(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))

    def no_network(*args, **kwargs):
        raise AssertionError("no download may be attempted")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    start = time.monotonic()
    with pytest.raises(PretrainedWeightsError) as info:
        build_model(ModelConfig(arch="resnet50_ibn_a", pretrained="imagenet"))
    assert time.monotonic() - start < 20  # model construction only, no network wait
    message = str(info.value)
    assert IBN_A_RESNET50_URL in message
    assert str(tmp_path / "checkpoints" / "resnet50_ibn_a-d9d0bb7b.pth") in message
    assert "model.pretrained=/path/to" in message and "model.pretrained=none" in message


def test_imagenet_reads_the_cached_file(monkeypatch, tmp_path, published_file):
    path, state = published_file
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "resnet50_ibn_a-d9d0bb7b.pth").symlink_to(path)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    model = build_model(ModelConfig(arch="resnet50_ibn_a", pretrained="imagenet"))
    assert_backbone_equals(model, state)
