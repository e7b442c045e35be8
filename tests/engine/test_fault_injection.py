"""A training process SIGKILLed at random points (extraction, clustering, mid-epoch, while
writing a checkpoint), each resume killed again at the next point, ends with the
uninterrupted run's weights: one run folder survives four kills in a row. Each `unreid`
command is a process of its own, forked from the test's (tests/forked_cli.py)."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
import torch

import forked_cli
from tiny_runs import QUIET_RUN
from unreid.checkpoint import load_checkpoint

TINY = [*QUIET_RUN, "train.iters=2", "train.epochs=2", "train.extract_batch_size=32"]
EPOCHS = 2
# how often each kill point is reached per epoch of TINY; the kill's count is drawn in
# [1, per epoch x epochs not yet saved], so every drawn point is reached by the process
PER_EPOCH = {"extract": 7, "cluster": 1, "step": 2, "checkpoint": 1}


def unreid(*args: str, kill_at: str | None = None) -> forked_cli.Finished:
    """`unreid ARGS` in a process of its own (forked: tests/forked_cli.py)."""
    env = {k: v for k, v in os.environ.items() if k != "UNREID_KILL_AT"}
    if kill_at:
        env["UNREID_KILL_AT"] = kill_at
    return forked_cli.run(list(args), env)


def weights(run: Path) -> dict[str, torch.Tensor]:
    ckpt = load_checkpoint(run / "last.pth")
    assert ckpt["state"]["epoch"] == EPOCHS
    return {**{f"model.{k}": v for k, v in ckpt["model"].items()},
            **{f"method.{k}": v for k, v in ckpt["method"].items()}}  # fmt: skip


def epochs_saved(run: Path) -> int:
    last = run / "last.pth"
    return load_checkpoint(last)["state"]["epoch"] if last.is_file() else 0


@pytest.mark.slow
def test_killed_runs_resume_to_the_uninterrupted_weights(tiny_synthetic, tmp_path):
    args = ["train", "--config", "demo", "--no-progress", *TINY, f"data.root={tiny_synthetic}"]
    done = unreid(*args, "--out", str(tmp_path / "straight"))
    assert done.returncode == 0, done.stderr
    reference = weights(tmp_path / "straight")
    rng = random.Random(0)
    run = tmp_path / "killed"
    launch = [*args, "--out", str(run)]
    kills = []
    for point, per_epoch in PER_EPOCH.items():  # checkpoint last: the others leave an epoch
        count = rng.randint(1, per_epoch * (EPOCHS - epochs_saved(run)))
        kills.append(f"{point}:{count}")
        killed = unreid(*launch, kill_at=kills[-1])
        assert killed.returncode == -9, f"{kills} was not reached: {killed.stderr[-500:]}"
        launch = ["train", "--resume", str(run), "--no-progress"]
    resumed = unreid(*launch)
    assert resumed.returncode == 0, f"after {kills}: {resumed.stderr[-2000:]}"
    got = weights(run)
    assert got.keys() == reference.keys()
    for key, value in reference.items():
        assert torch.equal(value, got[key]), f"killed at {kills}: {key} differs"
    epochs = [json.loads(x)["epoch"] for x in (run / "log.jsonl").read_text().splitlines()]
    assert epochs == [1, 2], f"after {kills}: log epochs {epochs}"
    assert not list(run.glob("*.tmp")), "stale temp files are cleaned on resume"
