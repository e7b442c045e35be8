"""Every registered method: interrupted at an epoch boundary and resumed = uninterrupted,
weights, optimizer and memories `torch.equal` (CPU: deterministic kernels)."""

from __future__ import annotations

import pytest
import torch

from tiny_runs import QUIET_RUN
from unreid.checkpoint import load_checkpoint
from unreid.config import load_config
from unreid.engine import train
from unreid.methods import list_methods

# Smaller images and batches than the other tiny runs: equality holds at any size, and
# this test trains 8 methods x 4 epochs, the biggest block of the suite.
TINY = [*QUIET_RUN, "train.iters=2", "data.height=64", "data.width=32", "train.batch_size=16"]


def method_overrides(method: str, source_root) -> list[str]:
    extra = {
        "cap": ["cap.inter_start_epoch=1"],  # the inter-camera term joins in epoch 2
        "spcl_uda": [
            "data.source=synthetic",
            f"data.source_root={source_root}",
            "model.dsbn=true",
            "train.batch_size=16",
        ],
    }
    return [f"method={method}", *extra.get(method, [])]


def tensors_equal(a, b, what: str) -> None:
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), what
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), what
        for k in a:
            tensors_equal(a[k], b[k], f"{what}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), what
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            tensors_equal(x, y, f"{what}[{i}]")
    else:
        assert a == b, what


@pytest.mark.parametrize("method", list_methods())
def test_resumed_run_equals_the_uninterrupted_one(
    method, tiny_synthetic, tiny_synthetic_b, tmp_path
):
    target = tiny_synthetic_b if method == "spcl_uda" else tiny_synthetic
    common = [
        *TINY,
        f"data.root={target}",
        f"out_dir={tmp_path}",
        *method_overrides(method, tiny_synthetic),
    ]
    train(load_config("demo", [*common, "name=straight", "train.epochs=2"]), progress=False)
    train(load_config("demo", [*common, "name=split", "train.epochs=1"]), progress=False)
    again = load_config("demo", [*common, "name=split", "train.epochs=2"])
    train(again, resume=tmp_path / "split", progress=False)
    a = load_checkpoint(tmp_path / "straight" / "last.pth")
    b = load_checkpoint(tmp_path / "split" / "last.pth")
    assert a["state"] == b["state"] and a["state"]["epoch"] == 2
    for part in ("model", "method", "optimizer", "scheduler"):
        tensors_equal(a[part], b[part], part)
    assert any(k.endswith("bank") for k in b["method"]), "the memories are in the checkpoint"
