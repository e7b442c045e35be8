"""Exports: ONNX Runtime equals torch to 1e-4 (any batch), safetensors reloads exactly.

Transformers (2 blocks: the export does not depend on depth) included, with a camera
embedding as the ONNX graph's second input.
"""

from __future__ import annotations

import json
from dataclasses import replace
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
from unreid.models import vit as vit_module
from unreid.models.reid_model import build_model
from unreid.models.vit import camera_ids


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


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600)])
def test_safetensors_files_get_the_mode_the_umask_gives(ckpt, tmp_path, capsys, umask, mode):
    """safetensors' save_file makes 0600 files whatever the umask; ours are ordinary files."""
    import os
    import stat

    from unreid.cli import main
    from unreid.search import FeatureSet, save_features

    weights = tmp_path / "m.safetensors"
    old = os.umask(umask)
    try:
        assert main(["export", "--checkpoint", str(ckpt), "--format", "safetensors",
                     "--out", str(weights), "--no-check"]) == 0  # fmt: skip
        features = FeatureSet(["a.jpg"], np.zeros((1, 4), np.float32))
        (feats,) = save_features(tmp_path / "f.safetensors", features)  # `unreid extract`'s
    finally:
        os.umask(old)
    for path in (weights, tmp_path / "m.yaml", feats):
        assert stat.S_IMODE(os.stat(path).st_mode) == mode, path
    assert not list(tmp_path.glob("*.tmp"))
    assert load_model(weights, device="cpu").feature_dim == load_model(ckpt).feature_dim


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


# (arch, extra settings, training cameras): plain patches, the ICS stem with TransReID's
# camera embedding on every token, CLIP with CLIP-ReID's on the class token
VITS = [
    ("vit_tiny", [], 0),
    ("vit_small", ["model.stem=ics", "model.camera_embedding=all_tokens"], 3),
    ("clip_vit_b16", ["model.camera_embedding=cls_token", "model.camera_coef=1.0"], 4),
]


@pytest.fixture(params=VITS, ids=[v[0] for v in VITS])
def vit_ckpt(request, tmp_path, monkeypatch) -> tuple[Path, int]:
    """A random-init 2-block transformer's checkpoint, BN statistics moved; its cameras."""
    for name, spec in list(vit_module.VIT_SPECS.items()):
        monkeypatch.setitem(vit_module.VIT_SPECS, name, replace(spec, depth=2))
    arch, extra, cams = request.param
    overrides = ["data.height=64", "data.width=32", f"model.arch={arch}", "model.pretrained=none"]
    cfg = load_config("demo", [*overrides, *extra])
    torch.manual_seed(0)
    model = build_model(cfg.model, (64, 32), cams)
    with torch.no_grad(), camera_ids(model, torch.arange(8) % max(cams, 1)):
        model.train()(torch.randn(8, 3, 64, 32))
    path = tmp_path / "best.pth"
    save_checkpoint(path, model=model.state_dict(), config=cfg.to_dict(), state={"epoch": 1})
    return path, cams


def test_transformer_onnx_equals_torch_cameras_as_an_input(vit_ckpt, images, tmp_path):
    ckpt, cams = vit_ckpt
    [onnx_path] = export_model(ckpt, "onnx", tmp_path / "m.onnx")
    embedder = load_model(ckpt, device="cpu")
    assert embedder.num_cameras == cams
    proto = onnx.load(str(onnx_path))
    inputs = {i.name: i.type.tensor_type.elem_type for i in proto.graph.input}
    assert inputs == ({"images": 1, "cameras": 7} if cams else {"images": 1})  # float, int64
    assert {p.key: p.value for p in proto.metadata_props}["unreid_num_cameras"] == str(cams)
    ids = [i % max(cams, 1) for i in range(len(images))] if cams else None
    for n in (1, len(images)):  # the batch axis is dynamic, for the cameras too
        x = embedder.preprocess(images[:n])
        part = ids[:n] if ids else None
        want = embedder.embed(images[:n], part).numpy()
        assert np.abs(onnx_features(onnx_path, x, part) - want).max() <= 1e-4
    if cams:  # the camera is read from the input, not baked in at export
        x = embedder.preprocess(images)
        other = embedder.embed(images, (cams - 1)).numpy()
        assert np.abs(onnx_features(onnx_path, x, [cams - 1] * len(images)) - other).max() <= 1e-4
        assert np.abs(other - embedder.embed(images, ids).numpy()).max() > 1e-3
        with pytest.raises(ValueError, match="m.onnx: the model has a camera embedding"):
            onnx_features(onnx_path, x)
        with pytest.raises(ValueError, match=rf"camera ids -1\.\.0 outside its {cams} cameras"):
            onnx_features(onnx_path, x, [-1] + [0] * (len(images) - 1))  # Gather would wrap
    else:
        with pytest.raises(ValueError, match="no 'cameras' input"):
            onnx_features(onnx_path, embedder.preprocess(images[:1]), [0])


def test_transformer_safetensors_rebuilds_the_network(vit_ckpt, images, tmp_path):
    """The grid from the config's size, the camera table's rows from the weights."""
    ckpt, cams = vit_ckpt
    weights, config = export_model(ckpt, "safetensors", tmp_path / "m.safetensors")
    config.unlink()  # the header alone must do
    reloaded, original = load_model(weights, device="cpu"), load_model(ckpt, device="cpu")
    assert reloaded.num_cameras == cams and reloaded.feature_dim == original.feature_dim
    ids = [i % cams for i in range(len(images))] if cams else None
    assert torch.equal(reloaded.embed(images, ids), original.embed(images, ids))
