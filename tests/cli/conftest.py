"""The CLI tools' input: an untrained 64x32 ResNet-18 checkpoint, written once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from unreid.checkpoint import save_checkpoint
from unreid.config import load_config
from unreid.models.reid_model import build_model


@pytest.fixture(scope="session")
def ckpt(tmp_path_factory) -> Path:
    cfg = load_config("demo", ["data.height=64", "data.width=32"])
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("cli_ckpt") / "best.pth"
    save_checkpoint(path, model=build_model(cfg.model).state_dict(), config=cfg.to_dict())
    return path
