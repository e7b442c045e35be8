"""Getting ImageNet or user weights into a backbone, failing loudly when they can't be had.

torchvision's download has no timeout of its own: on a machine with no route
out it can sit for minutes. We bound it and turn every failure into one message
that says which file was wanted, where it would be cached, and the two ways
round it (place the file there, or pass a local path / `none`).
"""

from __future__ import annotations

import socket
from pathlib import Path
from urllib.error import URLError

import torch
from torch import nn
from torchvision.models import ResNet18_Weights, ResNet50_Weights

IMAGENET_WEIGHTS = {
    # V1 weights: the ones `resnet50(pretrained=True)` gave the reference code.
    "resnet18": ResNet18_Weights.IMAGENET1K_V1,
    "resnet50": ResNet50_Weights.IMAGENET1K_V1,
}
DOWNLOAD_TIMEOUT_S = 30.0


class PretrainedWeightsError(RuntimeError):
    """ImageNet or user weights could not be loaded; the message says how to fix it."""


def imagenet_state_dict(arch: str) -> dict[str, torch.Tensor]:
    if arch not in IMAGENET_WEIGHTS:
        raise PretrainedWeightsError(f"no ImageNet weights known for arch {arch!r}")
    weights = IMAGENET_WEIGHTS[arch]
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        return weights.get_state_dict(progress=True)
    except (URLError, OSError, TimeoutError) as err:
        raise PretrainedWeightsError(
            f"could not get ImageNet weights for {arch}: {err}.\n"
            f"  wanted: {weights.url}\n"
            f"  cache:  {cached}\n"
            "Fix: download that file on a machine with internet and copy it to the cache path, "
            "or set model.pretrained=/path/to/weights.pth, or model.pretrained=none "
            "for random init."
        ) from err
    finally:
        socket.setdefaulttimeout(previous)


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
    """Load into the torchvision ResNet, ignoring its classifier; anything else missing is an error."""
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
