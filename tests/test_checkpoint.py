"""Checkpoints: what goes in comes back under `weights_only=True`, writes are atomic, bad files
are named, and resuming loads parameters strictly but tolerates resized buffers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from unreid import checkpoint
from unreid.checkpoint import (
    INFERENCE,
    TRAINING,
    CheckpointMismatch,
    checkpoint_kind,
    load_checkpoint,
    load_state,
    peek_checkpoint,
    save_checkpoint,
)


class Tiny(nn.Module):
    """One parameter and one buffer whose size, like a memory bank's, may change per run."""

    def __init__(self, rows: int = 4) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 2)
        self.register_buffer("bank", torch.zeros(rows, 2))


def test_round_trip_of_tensors_numbers_strings_lists_and_dicts(tmp_path):
    path = tmp_path / "last.pth"
    state = {
        "model": {"w": torch.randn(3, 2), "step": torch.tensor(7)},
        "epoch": 12,
        "mAP": 0.4375,
        "method": "cluster_contrast",
        "history": [1, 2.5, "x"],
    }
    save_checkpoint(path, **state)
    loaded = load_checkpoint(path)  # load_checkpoint reads with weights_only=True
    assert loaded.keys() == state.keys()
    assert torch.equal(loaded["model"]["w"], state["model"]["w"])
    assert torch.equal(loaded["model"]["step"], state["model"]["step"])
    assert loaded["epoch"] == 12 and isinstance(loaded["epoch"], int)
    assert loaded["mAP"] == 0.4375 and loaded["method"] == "cluster_contrast"
    assert loaded["history"] == [1, 2.5, "x"]
    assert torch.load(path, weights_only=True)["epoch"] == 12  # torch's strict loader too


def test_save_leaves_no_tmp_and_replaces_the_previous_file(tmp_path):
    path = tmp_path / "last.pth"
    save_checkpoint(path, epoch=1)
    save_checkpoint(path, epoch=2)
    assert load_checkpoint(path)["epoch"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["last.pth"]


def test_failed_save_keeps_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    path = tmp_path / "last.pth"
    save_checkpoint(path, epoch=1)
    before = path.read_bytes()

    def crash_midway(obj, f):
        f.write(b"half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint.torch, "save", crash_midway)
    with pytest.raises(OSError, match=r"cannot write checkpoint .*last\.pth: No space left"):
        save_checkpoint(path, epoch=2)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.pth"]  # the partial .tmp is gone
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1


def test_missing_file_is_named(tmp_path):
    path = tmp_path / "nowhere.pth"
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        load_checkpoint(path)


def test_corrupt_file_is_named(tmp_path):
    path = tmp_path / "broken.pth"
    path.write_bytes(b"\x00not a torch file")
    with pytest.raises(ValueError, match=r"broken\.pth.*not a readable unreid checkpoint"):
        load_checkpoint(path)


def test_load_state_loads_parameters_and_buffers():
    source = Tiny()
    source.bank.fill_(3.0)
    target = Tiny()
    load_state(target, source.state_dict(), "ckpt")
    assert torch.equal(target.linear.weight, source.linear.weight)
    assert torch.equal(target.bank, source.bank)


def test_load_state_gives_a_per_epoch_buffer_the_saved_size():
    source = Tiny(rows=6)
    source.bank.copy_(torch.arange(12.0).view(6, 2))
    target = Tiny(rows=4)
    load_state(target, source.state_dict(), "ckpt")
    assert torch.equal(target.linear.bias, source.linear.bias)
    assert torch.equal(target.bank, source.bank)  # the memory as it was saved


def test_load_state_names_a_missing_parameter():
    state = Tiny().state_dict()
    del state["linear.bias"]
    with pytest.raises(
        CheckpointMismatch, match=r"ckpt does not fit this model: missing: linear.bias"
    ):
        load_state(Tiny(), state, "ckpt")


def test_load_state_names_a_mis_shaped_or_unexpected_parameter():
    state = Tiny().state_dict()
    state["linear.weight"] = torch.zeros(5, 3)
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(
        CheckpointMismatch,
        match=r"unexpected: extra.weight; other shape: linear.weight \(5, 3\) in the file, \(2, 3\) here",
    ):
        load_state(Tiny(), state, "ckpt")


def test_a_kill_while_writing_keeps_the_previous_file(tmp_path):
    """A real SIGKILL between writing the new bytes and renaming them into place."""
    import subprocess
    import sys

    path = tmp_path / "last.pth"
    save_checkpoint(path, epoch=1)
    code = f"from unreid.checkpoint import save_checkpoint; save_checkpoint({str(path)!r}, epoch=2)"
    env = {**__import__("os").environ, "UNREID_KILL_AT": "checkpoint:1"}
    done = subprocess.run([sys.executable, "-c", code], env=env, timeout=120)
    assert done.returncode == -9
    assert load_checkpoint(path)["epoch"] == 1  # the previous checkpoint, complete
    assert (tmp_path / "last.pth.tmp").is_file()  # the stale temp a resume cleans up


def test_kind_is_recorded_or_read_off_the_entries():
    assert checkpoint_kind({"kind": INFERENCE, "optimizer": {}}) == INFERENCE
    assert checkpoint_kind({"kind": TRAINING}) == TRAINING
    full = dict.fromkeys(("model", "method", "optimizer", "scheduler", "state", "config"), {})
    assert checkpoint_kind(full) == TRAINING  # a best.pth from before the split: resumable
    assert checkpoint_kind({"model": {}, "config": {}, "state": {}}) == INFERENCE


def test_peek_maps_the_tensors_and_names_a_bad_file(tmp_path):
    path = tmp_path / "best.pth"
    save_checkpoint(path, kind=INFERENCE, model={"w": torch.arange(6.0)})
    peeked = peek_checkpoint(path)
    assert peeked["kind"] == INFERENCE and torch.equal(peeked["model"]["w"], torch.arange(6.0))
    (tmp_path / "broken.pth").write_bytes(b"\x00not a torch file")
    with pytest.raises(ValueError, match=r"broken\.pth.*not a readable unreid checkpoint"):
        peek_checkpoint(tmp_path / "broken.pth")
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        peek_checkpoint(tmp_path / "nowhere.pth")
