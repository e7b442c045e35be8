"""Ctrl-C ends `unreid train` with one line (what was kept, the resume command), no
traceback; the same command line with `--resume RUN` added then continues the run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

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
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [sys.executable, "-m", "unreid", *line]
    # A shell that started pytest in the background ignores SIGINT, and a child inherits
    # that (Python then installs no Ctrl-C handler): give the child the default back.
    proc = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.time() + 500
        while not (run / "last.pth").is_file() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=300)
    finally:
        proc.kill()  # nothing when it ended; a run that ignored Ctrl-C does not outlive the test
    err = err.decode()
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"unreid: interrupted: {run / 'last.pth'} keeps epoch "), last
    assert last.endswith(f"resume with: unreid train --resume {run}"), last
    kept = load_checkpoint(run / "last.pth")["state"]["epoch"]
    # the interrupted command line, --resume added, a shorter budget: accepted
    again = [*command, "--resume", str(run), f"train.epochs={kept + 1}"]
    done = subprocess.run(again, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert load_checkpoint(run / "last.pth")["state"]["epoch"] == kept + 1
