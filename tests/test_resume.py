"""What a resumed run may change, and where its state is found."""

from __future__ import annotations

import pytest
import yaml

from unreid.checkpoint import INFERENCE, save_checkpoint
from unreid.config import ConfigError, load_config
from unreid.resume import (
    RESUMABLE,
    InferenceCheckpointError,
    changed_keys,
    refuse_changes,
    resume_config,
    resume_point,
)


def test_resume_point_from_a_folder_or_a_file(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    assert resume_point(run) == (run, None)
    (run / "last.pth").write_bytes(b"x")
    assert resume_point(run) == (run, run / "last.pth")
    assert resume_point(run / "last.pth") == (run, run / "last.pth")
    with pytest.raises(FileNotFoundError, match="no such run folder or checkpoint"):
        resume_point(tmp_path / "missing")


def test_an_inference_checkpoint_cannot_be_resumed(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    save_checkpoint(run / "best.pth", kind=INFERENCE, model={}, config={}, state={"epoch": 3})
    pattern = (
        r"--resume .*best\.pth: best\.pth is an inference checkpoint .*no optimizer.*"
        r"Resume from the run's last\.pth instead: --resume .*last\.pth \(not there"
    )
    with pytest.raises(InferenceCheckpointError, match=pattern):
        resume_point(run / "best.pth")
    (run / "last.pth").write_bytes(b"x")  # there now: the message no longer says otherwise
    with pytest.raises(InferenceCheckpointError, match=r"last\.pth$"):
        resume_point(run / "best.pth")
    from unreid.cli import main

    assert main(["train", "--resume", str(run / "best.pth")]) == 2
    assert "best.pth is an inference checkpoint" in capsys.readouterr().err


def test_only_resumable_keys_may_be_overridden(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    cfg = load_config("demo", ["train.lr=0.001"])
    (run / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict()))
    again = resume_config(run, None, ["train.epochs=12", "data.root=/elsewhere"])
    assert (again.train.epochs, again.data.root, again.train.lr) == (12, "/elsewhere", 0.001)
    assert (again.out_dir, again.name) == (str(tmp_path), "run")
    with pytest.raises(ConfigError, match=r"train\.lr: cannot be changed on --resume"):
        resume_config(run, None, ["train.lr=0.1"])
    with pytest.raises(ConfigError, match=r"method: cannot be changed on --resume"):
        resume_config(run, None, ["method=hhcl"])


def test_resume_config_prefers_the_checkpoint(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    saved = load_config("hhcl/demo").to_dict()
    cfg = resume_config(run, {"config": saved}, [])
    assert cfg.method == "hhcl"
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="neither last.pth nor config.yaml"):
        resume_config(tmp_path / "empty", None, [])


def test_a_run_saved_before_fused_optimizer_existed_resumes_with_the_loop(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    saved = load_config("demo").to_dict()
    assert saved["train"]["fused_optimizer"] is True  # new runs: the fused kernel
    assert resume_config(run, {"config": saved}, []).train.fused_optimizer is True
    del saved["train"]["fused_optimizer"]  # as every run before the key was written
    assert resume_config(run, {"config": saved}, []).train.fused_optimizer is False
    (run / "config.yaml").write_text(yaml.safe_dump(saved))
    assert resume_config(run, None, []).train.fused_optimizer is False
    with pytest.raises(ConfigError, match=r"train\.fused_optimizer: cannot be changed"):
        resume_config(run, None, ["train.fused_optimizer=true"])


def test_changed_keys_ignore_resumable_ones():
    a = load_config("demo")
    b = load_config("demo", ["train.epochs=20", "train.lr=0.01", "cluster.eps=0.5"])
    diffs = changed_keys(a, b)
    assert set(diffs) == {"train.lr", "cluster.eps"}
    assert diffs["cluster.eps"] == (0.6, 0.5)
    with pytest.raises(ConfigError, match=r"cluster\.eps: run 0\.6, now 0\.5"):
        refuse_changes(a, b, "ckpt")
    assert "train.epochs" in RESUMABLE and "train.lr" not in RESUMABLE


def test_a_repeated_value_is_accepted_and_a_different_one_named_with_both(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    cfg = load_config("demo", ["data.dataset=folder", "train.iters=2"])
    (run / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict()))
    same = ["data.dataset=folder", "train.iters=2", "eval.select_best_on=val", "train.epochs=9"]
    again = resume_config(run, None, same)  # the interrupted command line, repeated
    assert (again.data.dataset, again.train.iters, again.train.epochs) == ("folder", 2, 9)
    with pytest.raises(
        ConfigError, match=r"train\.iters: cannot be changed on --resume.*run 2, given 3"
    ):
        resume_config(run, None, ["train.iters=3"])
