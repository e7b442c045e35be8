"""Ctrl-C ends `unreid train` with one line (what was kept, the resume command), no
traceback; the same command line with `--resume RUN` added then continues the run."""

from __future__ import annotations

import signal
import time

import pytest

import forked_cli
from tiny_runs import QUIET_RUN
from unreid.checkpoint import TRAINING, load_checkpoint, save_checkpoint
from unreid.cli import main

TINY = [*QUIET_RUN, "train.iters=2", "train.threads=1", "train.epochs=50"]


def test_ctrl_c_line_and_the_repeated_command_line_in_process(tmp_path, monkeypatch, capsys):
    """The same, without training: a stand-in for `train` saves epoch 3, then Ctrl-C."""
    run = tmp_path / "run"
    line = ["train", "--config", "demo", "--out", str(run), "data.dataset=folder", "train.iters=2"]
    seen = []

    def fake_train(cfg, resume=None, overwrite=False, progress=True):
        seen.append((cfg, resume))
        if resume is None:
            run.mkdir()
            keep = {k: {} for k in ("model", "method", "optimizer", "scheduler")}
            state = {"epoch": 3, "best_map": -1.0, "best_epoch": -1}
            save_checkpoint(
                run / "last.pth", kind=TRAINING, config=cfg.to_dict(), state=state, **keep
            )
            raise KeyboardInterrupt
        return {"run_dir": str(run)}

    monkeypatch.setattr("unreid.engine.train", fake_train)
    monkeypatch.setattr("unreid.cli.train.write_report", lambda *a, **k: run / "report.html")
    assert main(line) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().splitlines() == [
        f"unreid: interrupted: {run / 'last.pth'} keeps epoch 3; resume with: "
        f"unreid train --resume {run}"
    ]
    assert main([*line, "--resume", str(run), "train.epochs=4"]) == 0, capsys.readouterr().err
    cfg, resume = seen[-1]
    assert resume == str(run) and (cfg.train.iters, cfg.train.epochs) == (2, 4)
    assert main([*line, "--resume", str(run), "train.iters=3"]) == 2
    assert "train.iters: cannot be changed on --resume" in capsys.readouterr().err


@pytest.mark.slow
def test_ctrl_c_says_what_was_kept_and_the_same_line_with_resume_continues(
    tiny_synthetic, tmp_path
):
    run = tmp_path / "run"
    line = ["train", "--config", "demo", "--no-progress", "--out", str(run), *TINY]
    line.append(f"data.root={tiny_synthetic}")
    # a process of its own (forked from this one: tests/forked_cli.py), Ctrl-C as a shell
    # delivers it: SIGINT, which Python turns into KeyboardInterrupt
    proc = forked_cli.Child(line)
    try:
        deadline = time.time() + 500
        while not (run / "last.pth").is_file() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        err = proc.wait(timeout=300).stderr
    finally:
        proc.send_signal(signal.SIGKILL)  # nothing when it ended; a run that ignored Ctrl-C dies
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"unreid: interrupted: {run / 'last.pth'} keeps epoch "), last
    assert last.endswith(f"resume with: unreid train --resume {run}"), last
    kept = load_checkpoint(run / "last.pth")["state"]["epoch"]
    # the interrupted command line, --resume added, a shorter budget: accepted
    done = forked_cli.run([*line, "--resume", str(run), f"train.epochs={kept + 1}"])
    assert done.returncode == 0, done.stderr[-2000:]
    assert load_checkpoint(run / "last.pth")["state"]["epoch"] == kept + 1
