"""Checkpoints that survive a crash at any moment and reload under `weights_only=True`.

Only tensors, plain Python numbers, strings, lists and dicts go in (the
reference code's numpy scalars break loading on torch >= 2.6). A checkpoint is
written to a temporary file, flushed to disk (fsync) and only then renamed
over the previous one, so a kill or a power cut leaves either the old
complete file or the new complete file, never half of one.

A checkpoint is of one of two kinds, recorded under `kind`. A training one
(`last.pth`) holds everything a resume needs, optimizer state included; an
inference one (`best.pth`) holds only what embedding images needs, since for a
ViT-B the optimizer's moments alone are two thirds of a gigabyte.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import torch
from torch import nn

from unreid.faults import kill_point

__all__ = [
    "INFERENCE",
    "TRAINING",
    "CheckpointMismatch",
    "checkpoint_kind",
    "load_checkpoint",
    "inference_state",
    "load_state",
    "peek_checkpoint",
    "save_checkpoint",
    "save_safetensors",
]

TMP_SUFFIX = ".tmp"
TRAINING, INFERENCE = "training", "inference"
RESUME_KEYS = ("model", "method", "optimizer", "scheduler", "state", "config")
"""What a training checkpoint must hold for a resume to be the uninterrupted run."""


INFERENCE_MODEL = "inference_model"
"""A training checkpoint's key for the weights inference uses, when they are not `model`'s
(a method that extracts with another network: ICE's mean teacher)."""


def inference_state(ckpt: dict[str, Any]) -> dict[str, Any]:
    """The state dict a checkpoint's run was evaluated with: `inference_model` when the
    training checkpoint holds one, else `model` (every inference checkpoint, most runs)."""
    return ckpt[INFERENCE_MODEL] if INFERENCE_MODEL in ckpt else ckpt["model"]


class CheckpointMismatch(ValueError):
    """A checkpoint does not fit the model or method it is loaded into; names what differs."""


def save_checkpoint(path: str | Path, **state: Any) -> None:
    """Write `state` to `path` atomically and durably; errors name the file and the cause."""
    path = Path(path)
    kept = f" (the previous {path.name}, if any, is kept)"
    with _replacing(path, f"checkpoint {path}", kept, durable=True) as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
        kill_point("checkpoint")


def save_safetensors(
    path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> None:
    """`tensors` as a safetensors file at `path`, with the mode any new file gets here.

    safetensors' own `save_file` creates its file mode 0600 whatever the umask, so an
    exported model or feature file could not be read by the group or a service account
    that `cp` or `open()` would have let read it. The bytes are written through an
    ordinary `open()` instead (0644 under umask 022), to a temporary file renamed over
    `path`, so an interrupted write leaves no half file.
    """
    from safetensors.torch import save

    path = Path(path)
    data = save(tensors, metadata=metadata)
    with _replacing(path, str(path)) as f:
        f.write(data)


@contextlib.contextmanager
def _replacing(path: Path, what: str, note: str = "", durable: bool = False) -> Iterator[IO]:
    """A new file opened beside `path`, renamed over it once the block completes.

    A stale temporary from an interrupted write is removed first (a new file gets the
    umask's mode, not the stale one's) and whatever is left on failure is removed after;
    `durable` also makes the rename itself survive a crash. An OSError names `what`.
    """
    tmp = path.with_suffix(path.suffix + TMP_SUFFIX)
    try:
        tmp.unlink(missing_ok=True)
        with open(tmp, "wb") as f:
            yield f
        tmp.replace(path)
        if durable:
            _fsync_dir(path.parent)
    except OSError as err:
        raise OSError(f"cannot write {what}: {err.strerror or err}{note}") from err
    finally:
        tmp.unlink(missing_ok=True)  # already gone after a successful replace


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX: fsync the directory entry)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # not supported here (e.g. some network file systems)
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """The saved dict, read with `weights_only=True`; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"{path}: not a readable unreid checkpoint ({err})") from err


def peek_checkpoint(path: str | Path) -> dict[str, Any]:
    """The saved dict with its tensors memory-mapped, not read: cheap even for a 1 GB file.

    For questions about a checkpoint's entries (its kind, its config) asked before
    deciding whether to load it at all.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # not a zip-format file: mmap cannot serve it, a full read may
        return load_checkpoint(path)


def checkpoint_kind(ckpt: dict[str, Any]) -> str:
    """`TRAINING` or `INFERENCE`; files from before the split carry no `kind`, so their
    entries decide (a full training checkpoint can still be resumed)."""
    kind = ckpt.get("kind")
    if kind in (TRAINING, INFERENCE):
        return kind
    return TRAINING if all(k in ckpt for k in RESUME_KEYS) else INFERENCE


def load_state(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load every parameter and buffer; per-epoch buffers take the saved size.

    Parameters are architecture: a missing, unexpected or differently shaped one is
    a `CheckpointMismatch` naming it. Buffers whose size follows the data (memory
    banks, proxy tables: one row per cluster of that epoch) are resized to what was
    saved, so a resumed run continues with exactly the memories it had.
    """
    own = module.state_dict()
    params = dict(module.named_parameters())
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(state[k].shape)} in the file, {tuple(p.shape)} here"
        for k, p in params.items()
        if k in state and state[k].shape != p.shape
    ]
    if missing or unexpected or shapes:
        parts = [
            f"{what}: {', '.join(items[:5])}{' ...' if len(items) > 5 else ''}"
            for what, items in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("other shape", shapes),
            )
            if items
        ]
        raise CheckpointMismatch(f"{source} does not fit this model: " + "; ".join(parts))
    for name, buf in module.named_buffers():
        saved = state[name]
        if saved.shape != buf.shape:
            owner, _, leaf = name.rpartition(".")
            target = module.get_submodule(owner) if owner else module
            target._buffers[leaf] = torch.empty(saved.shape, dtype=buf.dtype, device=buf.device)
    module.load_state_dict(state, strict=True)
