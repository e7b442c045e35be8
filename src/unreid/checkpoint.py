"""Checkpoints that reload under torch's `weights_only=True` default.

Only tensors, plain Python numbers, strings, lists and dicts go in (the
reference code's numpy scalars break loading on torch >= 2.6). Memory banks
are not restored: they are rebuilt from fresh features at every epoch start.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["load_checkpoint", "load_matching", "save_checkpoint"]


def save_checkpoint(path: str | Path, **state: Any) -> None:
    """Write `state` to `path` atomically: a crash mid-write keeps the previous file intact.

    The data goes to `<path>.tmp` first and is renamed over `path` only when complete,
    so a resume never finds a half-written checkpoint; a failed write removes its `.tmp`.
    """
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        torch.save(state, tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)  # already gone after a successful replace


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """The saved dict, read with `weights_only=True`; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"{path}: not a readable unreid checkpoint ({err})") from err


def load_matching(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load parameters strictly; skip buffers whose shape changed (per-epoch memory banks)."""
    own = module.state_dict()
    params = dict(module.named_parameters())
    missing = [k for k in params if k not in state]
    bad = [k for k in params if k in state and state[k].shape != params[k].shape]
    if missing or bad:
        raise ValueError(f"{source}: parameters missing {missing[:5]} or mis-shaped {bad[:5]}")
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    module.load_state_dict(usable, strict=False)
