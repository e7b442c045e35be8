"""Weights into a backbone: local files, torchvision's layout quirks, and the ImageNet download.

No test touches the network: `urllib.request.urlopen` (the only way out `weights.py` has) is
replaced by a refusal or by a fake server, so the suite behaves the same with or without a
route to download.pytorch.org.
"""

from __future__ import annotations

import io
import socket
import time
import urllib.request
from urllib.error import URLError

import pytest
import torch
import torchvision
from torchvision.models import ResNet18_Weights

from unreid.models.backbones import BACKBONES
from unreid.models.reid_model import build_model
from unreid.models.weights import (
    DOWNLOAD_TIMEOUT_S,
    PretrainedWeightsError,
    download_to,
    hub_cache_path,
    imagenet_state_dict,
)
from unreid.settings import ModelConfig

R18 = ResNet18_Weights.IMAGENET1K_V1


@pytest.fixture
def hub_dir(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    return tmp_path


@pytest.fixture
def offline(monkeypatch):
    """urlopen refuses like a machine with no route out; records what it was asked."""
    calls = []

    def refuse(url, *args, **kwargs):
        calls.append(
            {"url": url, "timeout": kwargs.get("timeout"), "global": socket.getdefaulttimeout()}
        )
        raise URLError(OSError("network unreachable"))

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    return calls


def serve(monkeypatch, body: bytes, fail_after_first_chunk: bool = False) -> list[str]:
    """A fake server for `urlopen`: hands out `body` (or dies after its first chunk)."""
    asked = []

    class Response(io.BytesIO):
        def read(self, size: int = -1) -> bytes:
            if fail_after_first_chunk and self.tell() > 0:
                raise TimeoutError("read timed out")
            return super().read(min(size, 7) if fail_after_first_chunk else size)

    def fake_urlopen(url, *args, **kwargs):
        asked.append(url)
        return Response(body)

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    return asked


# --------------------------------------------------------------------------- local files


def test_local_weights_file_loads(tmp_path):
    donor = torchvision.models.resnet18(weights=None)
    path = tmp_path / "r18.pth"
    torch.save(donor.state_dict(), path)
    model = build_model(ModelConfig(arch="resnet18", pretrained=str(path)))
    assert torch.equal(model.backbone.conv1.weight, donor.conv1.weight)


def test_wrong_weights_file_is_a_clear_error(tmp_path):
    path = tmp_path / "r50.pth"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), path)
    with pytest.raises(PretrainedWeightsError, match="do not fit"):
        build_model(ModelConfig(arch="resnet18", pretrained=str(path)))
    with pytest.raises(PretrainedWeightsError, match="no such file"):
        build_model(ModelConfig(arch="resnet18", pretrained=str(tmp_path / "missing.pth")))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(PretrainedWeightsError, match="not a readable"):
        build_model(ModelConfig(arch="resnet18", pretrained=str(junk)))


def test_pre_041_file_without_bn_counters_and_a_training_save_load(tmp_path):
    """torchvision's V1 files have no `num_batches_tracked`; old `.pth.tar` saves wrap a
    `state_dict` beside other entries."""
    source = torchvision.models.resnet18(weights=None)
    state = {k: v for k, v in source.state_dict().items() if "num_batches_tracked" not in k}
    state["layer3.1.bn2.running_var"] = torch.rand(256) + 0.5  # not the init value
    path = tmp_path / "old.pth.tar"
    torch.save({"state_dict": state, "epoch": 90, "best_prec1": 77.1}, path)
    model = build_model(ModelConfig(arch="resnet18", pretrained=str(path)))
    torch.testing.assert_close(
        model.backbone.layer3[1].bn2.running_var, state["layer3.1.bn2.running_var"]
    )


# --------------------------------------------------------------------------- imagenet download


def test_offline_imagenet_fails_fast_with_instructions(hub_dir, offline):
    start = time.monotonic()
    with pytest.raises(PretrainedWeightsError) as info:
        BACKBONES.get("resnet18").imagenet()
    assert time.monotonic() - start < 20
    message = str(info.value)
    assert "resnet18-f37072fd.pth" in message and str(hub_dir) in message
    assert "model.pretrained=none" in message
    assert offline[0]["url"] == R18.url
    assert not (hub_dir / "checkpoints" / "resnet18-f37072fd.pth").exists()


def test_failed_download_leaves_the_process_socket_timeout_alone(hub_dir, offline):
    """The download's timeout is its own; the process-wide default is never touched."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(123.0)
    try:
        with pytest.raises(PretrainedWeightsError):
            imagenet_state_dict(R18)
        assert socket.getdefaulttimeout() == 123.0
    finally:
        socket.setdefaulttimeout(previous)
    assert offline == [{"url": R18.url, "timeout": DOWNLOAD_TIMEOUT_S, "global": 123.0}]


def test_download_lands_whole_in_the_hub_cache_and_is_reused(hub_dir, monkeypatch):
    state = {"w": torch.arange(6.0).view(2, 3), "b": torch.ones(2)}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    asked = serve(monkeypatch, buffer.getvalue())
    url = "https://example.invalid/models/tiny-0123abcd.pth"
    dest = hub_cache_path(url)
    assert dest == hub_dir / "checkpoints" / "tiny-0123abcd.pth"

    download_to(url, dest)
    assert asked == [url]
    assert [p.name for p in dest.parent.iterdir()] == [dest.name]  # no partial file left
    assert dest.read_bytes() == buffer.getvalue()

    weights = type("FakeWeights", (), {"url": url})()
    loaded = imagenet_state_dict(weights)  # already cached: no second request
    assert asked == [url]
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], state[k]) for k in state)


def test_interrupted_download_leaves_no_file_behind(hub_dir, monkeypatch):
    serve(monkeypatch, b"x" * 100, fail_after_first_chunk=True)
    with pytest.raises(PretrainedWeightsError, match="read timed out") as info:
        imagenet_state_dict(R18)
    assert str(hub_cache_path(R18.url)) in str(info.value)
    assert list((hub_dir / "checkpoints").iterdir()) == []  # neither the file nor a partial


def test_cached_v1_style_file_builds_the_imagenet_model_offline(hub_dir, offline):
    """A file already in the hub cache is used as is (old serialisation, no BN counters),
    the way torchvision's own download would have left it."""
    donor = torchvision.models.resnet18(weights=None)
    state = {k: v for k, v in donor.state_dict().items() if "num_batches_tracked" not in k}
    cached = hub_cache_path(R18.url)
    cached.parent.mkdir(parents=True)
    torch.save(state, cached, _use_new_zipfile_serialization=False)
    model = build_model(ModelConfig(arch="resnet18", pretrained="imagenet"))
    assert offline == []
    assert torch.equal(model.backbone.layer2[0].conv1.weight, donor.layer2[0].conv1.weight)
