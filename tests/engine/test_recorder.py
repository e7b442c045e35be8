"""The run folder: one valid JSON line per epoch, last.pth every epoch, best.pth when better;
last.pth holds what a resume needs, best.pth only what inference needs."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from torch import nn

from unreid.checkpoint import INFERENCE, TRAINING, load_checkpoint
from unreid.config import load_config
from unreid.engine.recorder import RunRecorder, metrics_record
from unreid.engine.setup import RunState, TrainingRun
from unreid.evaluation import RankingMetrics
from unreid.inference import load_model
from unreid.methods.base import Method
from unreid.models.reid_model import build_model
from unreid.pseudo_labels import PseudoLabels
from unreid.resume import InferenceCheckpointError


def metrics(m: float) -> RankingMetrics:
    return RankingMetrics(m, np.linspace(m, 1.0, 10), 5, 0)


def tiny_run() -> TrainingRun:
    model, method = nn.Linear(2, 2), Method()  # the base plug-in: no memories, no diagnostics
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    return TrainingRun(model, method, opt, torch.optim.lr_scheduler.StepLR(opt, 1, 0.5))


@pytest.fixture
def recorder(tmp_path):
    cfg = load_config("demo", [f"out_dir={tmp_path}", "name=r", "eval.select_best_on=val"])
    rec = RunRecorder(cfg)
    rec.start(tiny_run())
    return rec


def records(rec: RunRecorder) -> list[dict]:
    return [json.loads(line) for line in rec.log_path.read_text().splitlines()]


def test_writes_the_applied_config(recorder):
    saved = yaml.safe_load((recorder.run_dir / "config.yaml").read_text())
    assert saved["method"] == "cluster_contrast" and "cluster_contrast" in saved
    assert "hhcl" not in saved


def test_epoch_record_checkpoint_and_best(recorder):
    run, state = tiny_run(), RunState()
    labels = PseudoLabels(np.array([0, 0, 1, 1, -1]))
    recorder.untrained(metrics(0.1))
    recorder.epoch(
        0, labels, {"a": 1.0, "b": 0.5}, {"val": metrics(0.4)}, run, state, None, time.time()
    )
    assert (state.epoch, state.best_epoch, state.best_map) == (1, 1, 0.4)
    best = load_checkpoint(recorder.run_dir / "best.pth")
    assert best["state"]["best_epoch"] == 1 and best["config"]["method"] == "cluster_contrast"
    recorder.epoch(
        1,
        labels,
        {"a": 0.5},
        {"val": metrics(0.3), "test": metrics(0.2)},
        run,
        state,
        [1, 1, 2, 2, 3],
        time.time(),
    )
    assert (state.epoch, state.best_epoch) == (2, 1)  # worse: best.pth keeps epoch 1
    assert load_checkpoint(recorder.run_dir / "best.pth")["state"]["epoch"] == 1
    assert load_checkpoint(recorder.run_dir / "last.pth")["state"]["epoch"] == 2
    r0, r1, r2 = records(recorder)
    assert r0 == {"epoch": 0, "test": metrics_record(metrics(0.1))}
    assert (r1["epoch"], r1["clusters"], r1["outliers"], r1["losses"]) == (
        1,
        2,
        1,
        {"a": 1.0, "b": 0.5},
    )
    assert "pseudo_label_quality" not in r1 and "pseudo_label_quality" in r2
    assert r2["val"]["mAP"] == 0.3 and r2["test"]["rank1"] == pytest.approx(0.2)
    assert recorder.summary(state) == {
        "run_dir": str(recorder.run_dir),
        "epochs": 2,
        "best_epoch": 1,
        "best_on": "val",
        "final_test": metrics_record(metrics(0.2)),
        "final_val": metrics_record(metrics(0.3)),
    }


def test_no_evaluation_means_no_best_and_no_final_metrics(recorder):
    run, state = tiny_run(), RunState()
    recorder.epoch(0, PseudoLabels(np.array([0, 0])), {"a": 1.0}, {}, run, state, None, time.time())
    assert not (recorder.run_dir / "best.pth").exists() and state.best_epoch == -1
    assert recorder.summary(state)["final_test"] is None


def test_pseudo_labels_of_the_epoch_are_kept_for_the_report(recorder):
    from unreid.data.samples import Sample

    samples = [Sample("a.jpg", 0, 5), Sample("b.jpg", 1, 5), Sample("c.jpg", 1, 7)]
    recorder.pseudo_labels(2, PseudoLabels(np.array([0, 0, -1])), samples)
    saved = json.loads((recorder.run_dir / "pseudo_labels.json").read_text())
    assert saved == {
        "epoch": 3,
        "paths": ["a.jpg", "b.jpg", "c.jpg"],
        "cameras": [0, 1, 1],
        "camera_names": None,  # numbered cameras (Market-style): the report says c1, c2
        "true_ids": [5, 5, 7],
        "labels": [0, 0, -1],
    }
    three = [Sample("a.jpg", 0)] * 3
    recorder.pseudo_labels(3, PseudoLabels(np.array([1, 0, 0])), three, ["カメラ 1"])
    saved = json.loads((recorder.run_dir / "pseudo_labels.json").read_text())
    assert saved["epoch"] == 4 and saved["true_ids"] is None and saved["labels"] == [1, 0, 0]
    assert saved["camera_names"] == ["カメラ 1"]


def test_tensorboard_scalars_follow_log_jsonl(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = load_config("demo", [f"out_dir={tmp_path}", "name=tb", "log.tensorboard=true"])
    rec = RunRecorder(cfg)
    run, state = tiny_run(), RunState()
    rec.start(run)
    labels = PseudoLabels(np.array([0, 0, 1, 1]))
    rec.epoch(
        0, labels, {"cluster_nce": 2.5}, {"test": metrics(0.25)}, run, state, None, time.time()
    )
    rec.summary(state)
    events = EventAccumulator(str(rec.run_dir / "tensorboard"))
    events.Reload()
    assert events.Scalars("losses/cluster_nce")[0].value == 2.5
    assert events.Scalars("test/mAP")[0].step == 1


def resnet_run(cfg) -> TrainingRun:
    """The demo's ResNet-18 after one Adam step, so the optimizer holds its two moments."""
    torch.manual_seed(0)
    model = build_model(cfg.model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(4, 3, 64, 32)).square().sum().backward()
    opt.step()
    return TrainingRun(model, Method(), opt, torch.optim.lr_scheduler.StepLR(opt, 1, 0.5))


def test_best_holds_what_inference_needs_and_last_what_resume_needs(tmp_path, tiny_synthetic):
    overrides = ["name=r", "eval.select_best_on=val", "data.height=64", "data.width=32"]
    overrides += ["data.dataset=synthetic", f"data.root={tiny_synthetic}", "train.device=cpu"]
    cfg = load_config("demo", [f"out_dir={tmp_path}", *overrides])
    rec, run, state = RunRecorder(cfg), resnet_run(cfg), RunState()
    rec.start(run)
    labels = PseudoLabels(np.array([0, 0, 1, 1]))
    rec.epoch(0, labels, {"a": 1.0}, {"val": metrics(0.4)}, run, state, None, time.time())
    best_path, last_path = rec.run_dir / "best.pth", rec.run_dir / "last.pth"
    best, last = load_checkpoint(best_path), load_checkpoint(last_path)
    assert set(best) == {"kind", "model", "config", "preprocessing", "state", "scores"}
    assert {"optimizer", "scheduler", "scaler", "method", "rng"} <= set(last)
    assert (best["kind"], last["kind"]) == (INFERENCE, TRAINING)
    assert best["state"] == last["state"] == {"epoch": 1, "best_map": 0.4, "best_epoch": 1}
    assert best["scores"] == {"val": metrics_record(metrics(0.4))}
    assert best["config"] == last["config"] == cfg.to_dict()
    assert best["preprocessing"] == {
        "height": 64,
        "width": 32,
        "interpolation": "bicubic",
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "layout": "NCHW float32, RGB",
    }
    # Adam's two moments are twice the model: best.pth is about a third of last.pth
    assert best_path.stat().st_size < 0.4 * last_path.stat().st_size
    images = sorted((tiny_synthetic / "query").glob("*.jpg"))[:3]
    from_best = load_model(best_path, device="cpu").embed(images)
    assert torch.equal(from_best, load_model(last_path, device="cpu").embed(images))
    run.model.eval()
    transform = load_model(best_path, device="cpu").preprocessing.transform()
    batch = torch.stack([transform(Image.open(p).convert("RGB")) for p in images])
    with torch.no_grad():
        torch.testing.assert_close(from_best, run.model(batch), atol=1e-5, rtol=1e-5)

    from unreid.cli import main

    assert main(["eval", "--checkpoint", str(best_path)]) == 0  # all `unreid eval` needs

    again = load_config("demo", [f"out_dir={tmp_path}", *overrides])
    with pytest.raises(InferenceCheckpointError) as err:
        RunRecorder(again, resume=best_path)
    message = str(err.value)
    assert str(best_path) in message and "inference checkpoint" in message
    assert f"--resume {last_path}" in message
    assert RunRecorder(again, resume=last_path).checkpoint == last_path  # last.pth resumes
