"""Exports: ONNX Runtime equals torch to 1e-4 (any batch), safetensors reloads exactly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from unreid.checkpoint import save_checkpoint
from unreid.config import load_config
from unreid.errors import ConfigError
from unreid.export import export_model, onnx_features
from unreid.inference import load_model
from unreid.models.reid_model import build_model


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    """A recorder-style checkpoint of a random-init ResNet-18 at 64x32, with GeM pooling."""
    cfg = load_config("demo", ["data.height=64", "data.width=32"])
    torch.manual_seed(0)
    model = build_model(cfg.model)
    with torch.no_grad():  # move BN statistics off their defaults so they matter
        model.train()(torch.randn(8, 3, 64, 32))
    path = tmp_path_factory.mktemp("export") / "best.pth"
    save_checkpoint(path, model=model.state_dict(), config=cfg.to_dict(), state={"epoch": 1})
    return path


@pytest.fixture(scope="module")
def images(tiny_synthetic) -> list[Path]:
    return sorted((tiny_synthetic / "bounding_box_test").glob("*.jpg"))[:6]


def test_onnx_equals_torch_on_the_same_images(ckpt, images, tmp_path):
    [onnx_path] = export_model(ckpt, "onnx", tmp_path / "m.onnx")
    embedder = load_model(ckpt, device="cpu")
    for batch in (images[:1], images):  # the batch axis is dynamic
        x = embedder.preprocess(batch)
        want = embedder.embed(batch).numpy()
        got = onnx_features(onnx_path, x)
        assert got.shape == want.shape
        assert np.abs(got - want).max() <= 1e-4
    meta = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
    assert json.loads(meta["unreid_preprocessing"])["height"] == 64
    assert int(meta["unreid_feature_dim"]) == embedder.feature_dim


def test_safetensors_export_reloads_exactly(ckpt, images, tmp_path):
    weights, config = export_model(ckpt, "safetensors", tmp_path / "m.safetensors")
    assert config == tmp_path / "m.yaml"
    reloaded = load_model(weights, device="cpu")
    original = load_model(ckpt, device="cpu")
    assert reloaded.preprocessing == original.preprocessing
    assert torch.equal(reloaded.embed(images), original.embed(images))
    config.unlink()  # the header carries the config too
    assert torch.equal(
        load_model(weights, device="cpu").embed(images[:2]), original.embed(images[:2])
    )


def test_safetensors_without_any_config_is_a_clear_error(tmp_path):
    from safetensors.torch import save_file

    bare = tmp_path / "bare.safetensors"
    save_file({"w": torch.zeros(2)}, str(bare))
    with pytest.raises(ConfigError, match=r"bare.safetensors.*bare.yaml is missing"):
        load_model(bare)


def test_export_refuses_bad_requests(ckpt, tmp_path):
    with pytest.raises(ValueError, match="onnx, safetensors.*'tflite'"):
        export_model(ckpt, "tflite")
    with pytest.raises(ValueError, match=r"expected a \.onnx file name"):
        export_model(ckpt, "onnx", tmp_path / "m.safetensors")
