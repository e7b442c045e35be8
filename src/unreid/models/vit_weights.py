"""Getting the weight files people have into a transformer trunk (timm's key layout).

Layouts read, each from a local path (`model.pretrained=/path`):
- TransReID-SSL / DINO checkpoints: a `teacher` wrapper whose trunk keys
  carry `module.` and `backbone.` prefixes; the DINO projection head is dropped.
- `model` / `state_dict` wrappers (TransReID, training saves), `module.` / `base.`
  prefixes; keys of classifiers and necks (`head`, `dist`, `pre_logits`, `fc.`,
  `classifier`, `bottleneck`) are dropped for the ViTs: the re-ID neck starts fresh.
- plain timm state dicts (`jx_vit_base_p16_224`, hub `model.safetensors` files);
- OpenAI CLIP's `ViT-B-16.pt` (a TorchScript archive) and open_clip state dicts: the
  `visual.*` keys are renamed into timm's CLIP layout (`conv1` -> `patch_embed.proj`,
  `in_proj_*` -> `qkv.*`, `proj` -> the projection); the text tower is ignored.
- an unreid checkpoint or safetensors export of a transformer model (keys `trunk.*`).

The position table is resampled from the file's grid to the run's with timm's
`resample_abs_pos_embed`: bicubic with antialias (timm) or bilinear (TransReID's code,
`model.pos_resample=bilinear`). The file's grid is read from its token count: square
(ImageNet / CLIP, 14x14) or twice as tall as wide (LUPerson's 256x128 pretraining, 16x8).
Anything that does not fit is one error naming the missing, unexpected and mis-shaped keys;
a load that fits logs one line saying what came from where.
"""

from __future__ import annotations

import logging
import math
import zipfile
from pathlib import Path

import torch
from torch import nn

from unreid.models.weights import PretrainedWeightsError, download_to

__all__ = [
    "FAMILIES",
    "HUB_WEIGHTS",
    "convert_state_dict",
    "load_vit_weights",
    "read_weights_file",
    "vit_hub_file",
]

log = logging.getLogger("unreid")

# (arch, family) -> the hub repository serving it in timm's layout (model.safetensors).
HUB_WEIGHTS = {
    ("vit_tiny", "imagenet"): "timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k",
    ("vit_small", "imagenet"): "timm/vit_small_patch16_224.augreg_in21k_ft_in1k",
    ("vit_base", "imagenet"): "timm/vit_base_patch16_224.orig_in21k_ft_in1k",  # jx_vit_base_p16_224
    ("clip_vit_b16", "openai"): "timm/vit_base_patch16_clip_quickgelu_224.openai",
    ("clip_vit_b16", "clip"): "timm/vit_base_patch16_clip_quickgelu_224.openai",
}
FAMILIES = ("imagenet", "openai", "clip", "lup")  # names model.pretrained may use besides paths
HUB_URL = "https://huggingface.co/{repo}/resolve/main/model.safetensors"
LUPERSON_HELP = (
    "LUPerson weights (TransReID-SSL: vit_small_cfs_lup.pth, vit_small_ics_cfs_lup.pth, "
    "vit_base_ics_cfs_lup.pth) are not on a model hub: download them from the links in the "
    "damo-cv/TransReID-SSL README and set model.pretrained=/path/to/file.pth"
)
DROPPED = ("head", "dist", "pre_logits", "fc.", "classifier", "bottleneck")
OPENAI_SWAPS = (  # OpenAI / open_clip visual tower -> timm, applied in order
    ("conv1", "patch_embed.proj"),
    ("positional_embedding", "pos_embed"),
    ("transformer.resblocks.", "blocks."),
    ("ln_pre", "norm_pre"),
    ("ln_post", "norm"),
    ("ln_", "norm"),
    ("in_proj_", "qkv."),
    ("out_proj", "proj"),
    ("mlp.c_fc", "mlp.fc1"),
    ("mlp.c_proj", "mlp.fc2"),
)


def vit_hub_file(arch: str, family: str) -> Path:
    """The hub file for (arch, family): the torch hub cache copy, downloaded there if missing."""
    if family == "lup":
        raise PretrainedWeightsError(f"model.pretrained=lup for {arch}: {LUPERSON_HELP}")
    repo = HUB_WEIGHTS.get((arch, family))
    if repo is None:
        names = sorted(f for a, f in HUB_WEIGHTS if a == arch) + ["lup", "none", "/path"]
        raise PretrainedWeightsError(
            f"model.pretrained={family!r} is not a weight family of {arch}: expected one of "
            f"{', '.join(names)}"
        )
    url = HUB_URL.format(repo=repo)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / f"{repo.split('/')[1]}.safetensors"
    if not cached.is_file():
        log.info("downloading %s to %s", url, cached)
        try:
            download_to(url, cached)
        except OSError as err:
            raise PretrainedWeightsError(
                f"could not get {family} weights for {arch}: {err}.\n  wanted: {url}\n"
                f"  cache:  {cached}\nFix: download that file on a machine with internet and "
                "copy it to the cache path, or set model.pretrained=/path/to/weights, or "
                "model.pretrained=none for random init."
            ) from err
    return cached


def read_weights_file(path: str | Path) -> dict[str, object]:
    """Whatever the file holds: safetensors, a torch pickle (weights only) or TorchScript."""
    path = Path(path)
    if not path.is_file():
        raise PretrainedWeightsError(
            f"model.pretrained={str(path)!r}: no such file (expected a weight family name, "
            "'none' or a path to a .pth/.pt/.bin/.safetensors file)"
        )
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return dict(load_file(str(path)))
    if _is_torchscript(path):  # OpenAI's ViT-B-16.pt
        try:
            return dict(torch.jit.load(str(path), map_location="cpu").state_dict())
        except Exception as err:  # torch raises several unrelated types for a bad archive
            raise PretrainedWeightsError(f"{path}: unreadable TorchScript archive ({err})") from err
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several unrelated types for a bad file
        raise PretrainedWeightsError(f"{path}: not a readable torch weights file ({err})") from err
    if not isinstance(data, dict):
        raise PretrainedWeightsError(f"{path}: expected a dict of tensors, found {type(data)}")
    return data


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.endswith("constants.pkl") or "/code/" in n for n in z.namelist())


def _unwrap(data: dict[str, object], notes: list[str]) -> dict[str, torch.Tensor]:
    """The trunk's tensors out of DINO / training-save wrappers and their prefixes."""
    for key in ("teacher", "model", "state_dict", "module"):
        if isinstance(data.get(key), dict):
            data = data[key]  # type: ignore[assignment]
            notes.append(f"'{key}' wrapper")
            break
    state = {k: v for k, v in data.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise PretrainedWeightsError("no tensors found (expected a state dict)")
    for prefix in ("module.", "backbone.", "base.", "trunk."):
        if any(k.startswith(prefix) for k in state):
            if prefix in ("backbone.", "trunk."):  # a DINO head / re-ID neck beside it: dropped
                state = {k: v for k, v in state.items() if k.startswith(prefix)}
            state = {k.removeprefix(prefix): v for k, v in state.items()}
            notes.append(f"prefix '{prefix}' stripped")
    return state


def _from_openai(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in state.items():
        if not k.startswith("visual."):
            continue  # the text tower
        k = k.removeprefix("visual.")
        for old, new in OPENAI_SWAPS:
            k = k.replace(old, new)
        if k == "proj":  # x @ proj, [768, 512]: a bias-free Linear's weight is its transpose
            k, v = "head.weight", v.t()
        elif k == "class_embedding":
            k, v = "cls_token", v.view(1, 1, -1)
        elif k == "pos_embed":
            v = v.unsqueeze(0)
        out[k] = v
    return out


def file_grid(tokens: int) -> tuple[int, int]:
    """The (rows, columns) of a checkpoint's position table from its patch-token count."""
    side = math.isqrt(tokens)
    if side * side == tokens:
        return side, side
    half = math.isqrt(tokens // 2)
    if 2 * half * half == tokens:
        return 2 * half, half
    raise PretrainedWeightsError(
        f"the position table has {tokens} patch tokens: neither a square grid nor a 2:1 one "
        "(LUPerson's 16x8); resample it to the run's grid before loading"
    )


def convert_state_dict(
    data: dict[str, object], model: nn.Module, clip: bool, resample: str = "bicubic"
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """A file's contents in `model`'s (timm's) layout, position table on the model's grid."""
    from timm.layers import resample_abs_pos_embed

    notes: list[str] = []
    state = _unwrap(data, notes)
    if any(k.startswith("visual.") for k in state):
        state = _from_openai(state)
        notes.append("OpenAI/open_clip layout converted")
    elif clip and "head.bias" in state:  # timm's CLIP head: a Linear with a zero bias
        if state["head.bias"].abs().max() > 0:
            raise PretrainedWeightsError("the CLIP projection has a non-zero bias")
        del state["head.bias"]
    if not clip:
        dropped = [k for k in state if any(d in k for d in DROPPED)]
        state = {k: v for k, v in state.items() if k not in dropped}
        if dropped:
            notes.append(f"{len(dropped)} head/neck keys dropped")
    posemb = state.get("pos_embed")
    target = model.patch_embed.grid_size
    if posemb is not None and posemb.dim() == 3 and posemb.shape[1] != model.pos_embed.shape[1]:
        old = file_grid(posemb.shape[1] - 1)
        state["pos_embed"] = resample_abs_pos_embed(
            posemb, new_size=list(target), old_size=list(old), num_prefix_tokens=1,
            interpolation=resample, antialias=resample == "bicubic",
        )  # fmt: skip
        notes.append(f"pos_embed {old[0]}x{old[1]} -> {target[0]}x{target[1]} ({resample})")
    return state, notes


def load_vit_weights(
    model: nn.Module, data: dict[str, object], source: str, clip: bool, resample: str = "bicubic"
) -> None:
    """Load a file's contents into the timm trunk `model`; a partial fit is an error."""
    try:
        state, notes = convert_state_dict(data, model, clip, resample)
    except PretrainedWeightsError as err:
        raise PretrainedWeightsError(f"{source}: {err}") from err
    own = model.state_dict()
    missing = sorted(k for k in own if k not in state and not k.endswith("num_batches_tracked"))
    unexpected = sorted(k for k in state if k not in own)
    mismatched = sorted(
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in state
        if k in own and state[k].shape != own[k].shape
    )
    if missing or unexpected or mismatched:
        raise PretrainedWeightsError(
            f"{source}: weights do not fit the {model.__class__.__name__} trunk: "
            f"{len(missing)} missing {missing[:8]}, {len(unexpected)} unexpected "
            f"{unexpected[:8]}, {len(mismatched)} with other shapes (file vs model) "
            f"{mismatched[:8]}"
        )
    model.load_state_dict(state, strict=False)
    log.info("loaded %d tensors from %s (%s)", len(state), source, "; ".join(notes) or "as is")
