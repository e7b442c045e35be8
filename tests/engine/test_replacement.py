"""`--overwrite` never loses a run: the old run is kept aside until the new one has a
checkpoint, and comes back byte-identical when the new one stops before (an error, Ctrl-C,
a SIGKILL); a run that stopped before its first checkpoint does not block its folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import forked_cli
from tiny_runs import ONE_STEP_RUN
from unreid.checkpoint import load_checkpoint
from unreid.config import load_config
from unreid.engine import train
from unreid.engine.loop import DegenerateClustering
from unreid.engine.recorder import RunFolderError
from unreid.engine.replacement import MARKER, aside_path, move_aside, recover

TINY = ONE_STEP_RUN  # the run of conftest's `finished` copies


def config(root: Path, out: Path, *extra: str):
    return load_config("demo", [*TINY, f"data.root={root}", f"out_dir={out}", "name=r", *extra])


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def interrupt(*args, **kwargs):
    raise KeyboardInterrupt


@pytest.mark.parametrize("failure", ["degenerate", "ctrl_c"])
def test_overwrite_whose_new_run_fails_in_epoch_one_keeps_the_old_run(
    failure, finished, tiny_synthetic, tmp_path, monkeypatch, caplog
):
    before = files(finished)
    if failure == "degenerate":  # the case: one cluster holds every image
        cfg, error = config(tiny_synthetic, tmp_path, "cluster.eps=0.99"), DegenerateClustering
    else:  # Ctrl-C in the middle of the first epoch
        monkeypatch.setattr("unreid.engine.loop.train_one_epoch", interrupt)
        cfg, error = config(tiny_synthetic, tmp_path, "train.seed=7"), KeyboardInterrupt
    with caplog.at_level("INFO", logger="unreid"), pytest.raises(error):
        train(cfg, overwrite=True, progress=False)
    assert files(finished) == before  # last.pth, log.jsonl, report.html: byte-identical
    assert not aside_path(finished).exists()
    assert "the run it was to replace is back" in caplog.text


def test_overwrite_drops_the_old_run_once_the_new_one_has_a_checkpoint(
    finished, tiny_synthetic, tmp_path
):
    train(config(tiny_synthetic, tmp_path, "train.seed=5"), overwrite=True, progress=False)
    assert load_checkpoint(finished / "last.pth")["config"]["train"]["seed"] == 5
    assert not aside_path(finished).exists()
    names = set(files(finished))
    assert "report.html" not in names  # the old run's report never describes the new one
    assert MARKER not in names


def test_a_run_that_stopped_before_its_first_checkpoint_does_not_block(
    tiny_synthetic, tmp_path, caplog
):
    with pytest.raises(DegenerateClustering):
        train(config(tiny_synthetic, tmp_path, "cluster.eps=0.99"), progress=False)
    assert (tmp_path / "r" / "config.yaml").exists() and not (tmp_path / "r" / "last.pth").exists()
    with caplog.at_level("INFO", logger="unreid"):
        train(config(tiny_synthetic, tmp_path), progress=False)  # no --overwrite needed
    assert "stopped before its first checkpoint" in caplog.text
    assert (tmp_path / "r" / "last.pth").exists()
    # a run with a checkpoint still blocks
    with pytest.raises(RunFolderError, match="already holds a run"):
        train(config(tiny_synthetic, tmp_path), progress=False)


def fake_run(folder: Path, *names: str) -> dict[str, bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(os.urandom(64))
    return files(folder)


def test_recover_puts_back_a_run_whose_replacement_was_killed(tmp_path):
    run = tmp_path / "r"
    old = fake_run(run, "config.yaml", "log.jsonl", "last.pth", "report.html")
    aside = move_aside(run)
    fake_run(run, "config.yaml", "log.jsonl")  # the new run, killed in epoch 1
    recover(run)
    assert files(run) == old and not aside.exists()
    # killed between the rename and the new folder: the old run comes back too
    run.rename(aside)
    recover(run)
    assert files(run) == old


def test_recover_drops_the_old_run_once_the_new_one_has_its_checkpoint(tmp_path):
    run = tmp_path / "r"
    fake_run(run, "config.yaml", "last.pth")
    aside = move_aside(run)
    new = fake_run(run, "config.yaml", "last.pth")  # killed right after its checkpoint
    recover(run)
    assert not aside.exists() and set(files(run)) == set(new) - {MARKER}


def test_recover_leaves_a_folder_it_did_not_make_alone(tmp_path):
    run, other = tmp_path / "r", tmp_path / "r.replaced"
    mine, theirs = fake_run(run, "last.pth"), fake_run(other, "last.pth")
    recover(run)
    assert files(run) == mine and files(other) == theirs


@pytest.mark.slow
def test_a_sigkilled_overwrite_leaves_the_old_run_to_the_next_command(finished, tiny_synthetic):
    before = files(finished)
    args = ["train", "--config", "demo", "--no-progress", *TINY, f"data.root={tiny_synthetic}"]
    args += ["--out", str(finished)]
    env = {**os.environ, "UNREID_KILL_AT": "step:1"}
    killed = forked_cli.run([*args, "--overwrite", "train.seed=9"], env)  # a process of its own
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert aside_path(finished).exists()  # nobody could put it back yet
    with pytest.raises(RunFolderError, match="already holds a run"):
        train(config(tiny_synthetic, finished.parent), progress=False)  # the next command
    assert files(finished) == before and not aside_path(finished).exists()
