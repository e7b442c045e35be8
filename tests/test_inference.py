"""`load_model(...).embed(...)`: the checkpoint's preprocessing, any image input, any batch size."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.functional import pil_to_tensor

import unreid
from unreid.checkpoint import save_checkpoint
from unreid.config import load_config
from unreid.data.transforms import test_transform as reference_transform
from unreid.errors import ConfigError
from unreid.models import vit as vit_module
from unreid.models.reid_model import build_model
from unreid.models.vit import camera_ids


def checkpoint(path: Path, height: int = 64, width: int = 32, *extra: str) -> Path:
    """A checkpoint as the recorder writes it, of a random-init ResNet-18 (no training)."""
    cfg = load_config("demo", [f"data.height={height}", f"data.width={width}", *extra])
    torch.manual_seed(0)
    model = build_model(cfg.model)
    save_checkpoint(path, model=model.state_dict(), config=cfg.to_dict(), state={"epoch": 1})
    return path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return checkpoint(tmp_path_factory.mktemp("inference") / "best.pth")


@pytest.fixture(scope="module")
def model(ckpt: Path):
    return unreid.load_model(ckpt, device="cpu")


@pytest.fixture(scope="module")
def images(tiny_synthetic) -> list[Path]:
    return sorted((tiny_synthetic / "query").glob("*.jpg"))[:5]


def test_every_input_kind_gives_the_same_features(model, images):
    by_path = model.embed(images)
    pils = [Image.open(p).convert("RGB") for p in images]
    assert torch.equal(model.embed(pils), by_path)
    assert torch.equal(model.embed([pil_to_tensor(p) for p in pils]), by_path)
    assert torch.equal(model.embed(torch.stack([pil_to_tensor(p) for p in pils])), by_path)
    torch.testing.assert_close(model.embed(str(images[0])), by_path[:1])  # batch of one
    assert by_path.shape == (5, model.feature_dim) and by_path.dtype == torch.float32
    torch.testing.assert_close(by_path.norm(dim=1), torch.ones(5))


def test_features_match_the_model_on_the_evaluation_transform(model, images):
    transform = reference_transform(64, 32)
    batch = torch.stack([transform(Image.open(p).convert("RGB")) for p in images])
    with torch.no_grad():
        want = model.model.eval()(batch)
    torch.testing.assert_close(model.embed(images, batch_size=2), want, atol=1e-5, rtol=1e-5)


def test_preprocessing_comes_from_the_checkpoint(tmp_path, images):
    model = unreid.load_model(checkpoint(tmp_path / "c.pth", 80, 40), device="cpu")
    assert (model.preprocessing.height, model.preprocessing.width) == (80, 40)
    assert model.preprocess(images[:2]).shape == (2, 3, 80, 40)


def test_batch_size_does_not_change_features(model, images):
    torch.testing.assert_close(
        model.embed(images, batch_size=1), model.embed(images, batch_size=64)
    )


def test_bad_inputs_are_clear_errors(model, tmp_path, images):
    with pytest.raises(ValueError, match="uint8"):
        model.embed(torch.rand(3, 64, 32))
    with pytest.raises(ValueError, match=r"\(3, H, W\).*\(64, 32, 3\)"):
        model.embed(torch.zeros(64, 32, 3, dtype=torch.uint8))
    with pytest.raises(TypeError, match="int"):
        model.embed([3])
    with pytest.raises(OSError, match="nowhere.jpg"):
        model.embed([tmp_path / "nowhere.jpg"])
    with pytest.raises(ValueError, match="no images"):
        model.embed([])
    bare = tmp_path / "bare.pth"
    torch.save({"weights": torch.zeros(1)}, bare)
    with pytest.raises(ConfigError, match=r"bare.pth.*'model' and 'config'"):
        unreid.load_model(bare)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        unreid.load_model(tmp_path / "missing.pth")


def test_weights_of_another_architecture_are_refused(tmp_path):
    ckpt = torch.load(checkpoint(tmp_path / "c.pth"), weights_only=True)
    ckpt["config"]["model"]["pooling"] = "avg"  # the saved GeM exponent has no place
    save_checkpoint(tmp_path / "wrong.pth", **ckpt)
    with pytest.raises(ConfigError, match="wrong.pth: weights do not match"):
        unreid.load_model(tmp_path / "wrong.pth")


@pytest.fixture(scope="module")
def camera_model(tmp_path_factory):
    """A 2-block ViT-Ti with TransReID's camera embedding, trained on 3 cameras (random init)."""
    with pytest.MonkeyPatch.context() as patch:
        for name, spec in list(vit_module.VIT_SPECS.items()):
            patch.setitem(vit_module.VIT_SPECS, name, replace(spec, depth=2))
        vit = ["model.arch=vit_tiny", "model.pretrained=none", "model.camera_embedding=all_tokens"]
        cfg = load_config("demo", ["data.height=64", "data.width=32", *vit])
        torch.manual_seed(0)
        path = tmp_path_factory.mktemp("vit") / "best.pth"
        state = build_model(cfg.model, (64, 32), 3).state_dict()
        save_checkpoint(path, model=state, config=cfg.to_dict(), state={"epoch": 1})
        yield unreid.load_model(path, device="cpu")  # load_model builds 2 blocks too


def test_a_camera_embedding_model_embeds_each_image_with_its_camera(camera_model, images):
    ids = [0, 1, 2, 0, 1]
    batch = camera_model.preprocess(images)
    with torch.no_grad(), camera_ids(camera_model.model, torch.tensor(ids)):
        want = camera_model.model(batch)
    assert camera_model.num_cameras == 3
    got = camera_model.embed(images, ids, batch_size=2)  # each batch gets its own rows' ids
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(camera_model.embed(images, torch.tensor(ids)), got)
    torch.testing.assert_close(camera_model.embed(images, np.array(ids)), got)
    torch.testing.assert_close(camera_model.embed(images, 2), camera_model.embed(images, [2] * 5))
    assert not torch.allclose(camera_model.embed(images, 2), got, atol=1e-3)


def test_camera_ids_missing_or_wrong_are_clear_errors(camera_model, images):
    needs = r"best.pth has a camera embedding \(model.camera_embedding=all_tokens, 3 training"
    with pytest.raises(ValueError, match=needs + r" cameras\): embed\(images, cameras="):
        camera_model.embed(images)
    with pytest.raises(ValueError, match=r"5 images but \(2,\) camera ids"):
        camera_model.embed(images, [0, 1])
    with pytest.raises(ValueError, match=r"camera ids 0\.\.3 outside the 3 cameras.*\(0\.\.2\)"):
        camera_model.embed(images, [0, 1, 2, 3, 0])
    with pytest.raises(TypeError, match="integer camera indices.*float"):
        camera_model.embed(images, [0.0] * 5)
    with pytest.raises(TypeError, match="an int or one int per image"):
        camera_model.embed(images, "c1")


def test_models_without_a_camera_embedding_ignore_cameras(model, images):
    assert model.num_cameras == 0
    assert torch.equal(model.embed(images, [0, 1, 2, 3, 4]), model.embed(images))


def test_import_unreid_stays_light():
    code = "import sys, unreid; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False"]
    assert callable(unreid.load_model) and "load_model" in unreid.__all__
    with pytest.raises(AttributeError, match="no_such_name"):
        unreid.no_such_name  # noqa: B018
