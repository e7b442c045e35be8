"""Getting ImageNet or user weights into a backbone, failing loudly when they can't be had.

torchvision's own download (`WeightsEnum.get_state_dict`) has no timeout: on a machine
with no route out it can sit for minutes, and bounding it from outside means changing
the process-wide socket timeout, which every other connection in the process would then
inherit. So the download is ours: `urlopen` with its own timeout, streamed into a
temporary file beside the target and renamed into place only once complete (a killed or
failed download never leaves a truncated file where the next run would trust it). The
target is torch hub's checkpoint directory, under torchvision's file name, so files
fetched by torchvision, by hand or by us are interchangeable. Every failure becomes one
message that says which file was wanted, where it would be cached, and the two ways round
it (place the file there, or pass a local path / `none`).
"""

from __future__ import annotations

import http.client
import logging
import os
import tempfile
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn
from torchvision.models import WeightsEnum

__all__ = [
    "DOWNLOAD_TIMEOUT_S",
    "PretrainedWeightsError",
    "download_to",
    "hub_cache_path",
    "imagenet_state_dict",
    "load_backbone_weights",
    "read_state_dict",
]

log = logging.getLogger("unreid")

# Seconds one connect or read may stall (not the whole transfer: a slow but live link is fine).
DOWNLOAD_TIMEOUT_S = 30.0
CHUNK_BYTES = 1 << 20


class PretrainedWeightsError(RuntimeError):
    """ImageNet or user weights could not be loaded; the message says how to fix it."""


def hub_cache_path(url: str) -> Path:
    """Where torch.hub keeps `url`'s file, so torchvision and hand-placed copies are found."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name


def download_to(url: str, dest: Path, timeout: float = DOWNLOAD_TIMEOUT_S) -> None:
    """Fetch `url` into `dest`; `dest` appears only when the whole file has arrived.

    The temporary file sits in `dest`'s directory so the final rename is atomic (same
    filesystem), and it is removed on any failure, interrupts included.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".partial")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            while chunk := response.read(CHUNK_BYTES):
                out.write(chunk)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def imagenet_state_dict(weights: WeightsEnum) -> dict[str, torch.Tensor]:
    """torchvision's ImageNet weights: the hub-cache copy, downloaded there first if missing."""
    cached = hub_cache_path(weights.url)
    if not cached.is_file():
        log.info("downloading %s to %s", weights.url, cached)
        try:
            download_to(weights.url, cached)
        except (OSError, http.client.HTTPException) as err:  # URLError and timeouts are OSErrors
            raise PretrainedWeightsError(
                f"could not get ImageNet weights {weights}: {err}.\n"
                f"  wanted: {weights.url}\n"
                f"  cache:  {cached}\n"
                "Fix: download that file on a machine with internet and copy it to the cache "
                "path, or set model.pretrained=/path/to/weights.pth, or model.pretrained=none "
                "for random init."
            ) from err
    return read_state_dict(cached)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A torchvision-style state dict, an unreid checkpoint, or a .safetensors file."""
    path = Path(path)
    if not path.is_file():
        raise PretrainedWeightsError(
            f"model.pretrained={str(path)!r}: no such file (expected 'imagenet', 'none' or a "
            "path to a .pth/.pt/.safetensors weights file)"
        )
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as err:
            raise PretrainedWeightsError(
                f"{path}: reading .safetensors needs `pip install safetensors`"
            ) from err
        return load_file(str(path))
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several unrelated types for a bad file
        raise PretrainedWeightsError(f"{path}: not a readable torch weights file ({err})") from err
    for key in ("model", "state_dict"):  # an unreid checkpoint; a `.pth.tar` training save
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
            break
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise PretrainedWeightsError(f"{path}: expected a state dict of tensors")
    return data


def load_backbone_weights(backbone: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load into the torchvision ResNet, ignoring its classifier; anything else missing is an error.

    A silent partial load would train from a half-random trunk and only show up as a poor
    mAP hours later, hence the strict key and shape check up front.
    """
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if any(k.startswith("backbone.") for k in state):  # a whole unreid model
        state = {
            k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")
        }
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    own = {k: v for k, v in backbone.state_dict().items() if not k.startswith("fc.")}
    # Files saved before PyTorch 0.4.1 (torchvision's V1 ResNets among them) have no
    # BN `num_batches_tracked` counters; load_state_dict leaves those at 0, harmlessly.
    missing = sorted(k for k in own if k not in state and not k.endswith("num_batches_tracked"))
    unexpected = sorted(k for k in state if k not in own)
    mismatched = sorted(k for k in state if k in own and state[k].shape != own[k].shape)
    if missing or unexpected or mismatched:
        raise PretrainedWeightsError(
            f"{source}: weights do not fit the backbone: "
            f"{len(missing)} missing (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:3]}), "
            f"{len(mismatched)} with other shapes (e.g. {mismatched[:3]})"
        )
    backbone.load_state_dict(state, strict=False)
