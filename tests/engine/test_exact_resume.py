"""Every registered method: interrupted at an epoch boundary and resumed = uninterrupted,
weights, optimizer and memories `torch.equal` (CPU: deterministic kernels).

The uninterrupted run is the method's learning run (`tests/learning_runs.py`, shared with
`test_learning`); its folder was copied after the next-to-last epoch, and resuming the
copy must end in the same checkpoint. CAP's inter-camera term joins in that last epoch,
SpCL UDA adapts from the second tiny set: the resumed epoch covers both.
"""

from __future__ import annotations

import pytest
import torch

from learning_runs import per_method
from unreid.checkpoint import load_checkpoint
from unreid.methods import list_methods


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


@pytest.mark.slow
@pytest.mark.parametrize("method", per_method(list_methods()))
def test_resumed_run_equals_the_uninterrupted_one(method, learning_runs):
    straight = learning_runs.get(method, "trained").folder
    split = learning_runs.resumed(method)
    a = load_checkpoint(straight / "last.pth")
    b = load_checkpoint(split / "last.pth")
    epochs = learning_runs.split_epoch(method) + 1
    assert a["state"] == b["state"] and a["state"]["epoch"] == epochs
    for part in ("model", "method", "optimizer", "scheduler"):
        tensors_equal(a[part], b[part], part)
    assert any(k.endswith("bank") for k in b["method"]), "the memories are in the checkpoint"
