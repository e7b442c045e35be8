"""A real training process SIGKILLed at random points (extraction, clustering, mid-epoch,
while writing a checkpoint) and resumed ends with the uninterrupted run's weights."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tiny_runs import QUIET_RUN
from unreid.checkpoint import load_checkpoint

TINY = [*QUIET_RUN, "train.iters=2", "train.epochs=2", "train.extract_batch_size=32"]
# (point, how many times it is reached in the run before the kill: drawn below)
RANGES = {"extract": (1, 14), "cluster": (1, 2), "step": (1, 4), "checkpoint": (1, 2)}


def unreid(*args: str, kill_at: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "UNREID_KILL_AT"}
    if kill_at:
        env["UNREID_KILL_AT"] = kill_at
    return subprocess.run(
        [sys.executable, "-m", "unreid", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def weights(run: Path) -> dict[str, torch.Tensor]:
    ckpt = load_checkpoint(run / "last.pth")
    assert ckpt["state"]["epoch"] == 2
    return {**{f"model.{k}": v for k, v in ckpt["model"].items()},
            **{f"method.{k}": v for k, v in ckpt["method"].items()}}  # fmt: skip


@pytest.mark.slow
def test_killed_runs_resume_to_the_uninterrupted_weights(tiny_synthetic, tmp_path):
    args = ["train", "--config", "demo", "--no-progress", *TINY, f"data.root={tiny_synthetic}"]
    done = unreid(*args, "--out", str(tmp_path / "straight"))
    assert done.returncode == 0, done.stderr
    reference = weights(tmp_path / "straight")
    rng = random.Random(0)
    for point, (low, high) in RANGES.items():
        count = rng.randint(low, high)
        run = tmp_path / f"killed-{point}"
        killed = unreid(*args, "--out", str(run), kill_at=f"{point}:{count}")
        assert killed.returncode == -9, f"{point}:{count} was not reached: {killed.stderr[-500:]}"
        resumed = unreid("train", "--resume", str(run), "--no-progress")
        assert resumed.returncode == 0, f"{point}:{count}: {resumed.stderr[-2000:]}"
        got = weights(run)
        assert got.keys() == reference.keys()
        for key, value in reference.items():
            assert torch.equal(value, got[key]), f"killed at {point}:{count}: {key} differs"
        epochs = [json.loads(x)["epoch"] for x in (run / "log.jsonl").read_text().splitlines()]
        assert epochs == [1, 2], f"{point}:{count}: log epochs {epochs}"
        assert not list(run.glob("*.tmp")), "stale temp files are cleaned on resume"
