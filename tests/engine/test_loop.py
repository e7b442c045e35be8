"""End-to-end: the outer loop on a tiny synthetic set, its records and its method hooks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tiny_runs import TINY_RUN
from unreid.checkpoint import load_checkpoint
from unreid.config import load_config
from unreid.distributed import DistContext
from unreid.engine import train
from unreid.engine.loop import cluster
from unreid.methods import Method


def clustered(cfg, feats, samples):
    """The loop's pseudo-label step on given features (Method: no refinement)."""
    from types import SimpleNamespace

    labelled = all(s.pid is not None for s in samples)
    data = SimpleNamespace(train=samples, true_ids=[s.pid for s in samples] if labelled else None)
    return cluster(cfg, SimpleNamespace(method=Method(), ctx=DistContext()), 0, feats, data)


def tiny_config(root: Path, out: Path, *extra: str):
    cfg = load_config("demo", [*TINY_RUN, f"data.root={root}", f"out_dir={out}", *extra])
    return cfg


def test_a_run_records_every_epoch_and_keeps_what_inference_and_resume_need(
    tiny_synthetic, tmp_path
):
    """The loop's records; that the run learns is test_learning's (against a null control)."""
    cfg = tiny_config(
        tiny_synthetic, tmp_path, "train.epochs=2", "train.iters=2", "eval.every=2",
        "data.height=64", "data.width=32", "train.batch_size=16",
    )  # fmt: skip
    summary = train(cfg, progress=False)
    records = [
        json.loads(x) for x in (Path(summary["run_dir"]) / "log.jsonl").read_text().split("\n") if x
    ]
    assert [r["epoch"] for r in records] == [0, 1, 2]  # the untrained network's, then each epoch
    assert "test" in records[0] and records[-1]["test"]["mAP"] == summary["final_test"]["mAP"]
    assert all(r["clusters"] >= 2 for r in records[1:])
    assert "pseudo_label_quality" in records[-1] and "val" in records[-1]
    assert (Path(summary["run_dir"]) / "best.pth").is_file()
    assert (Path(summary["run_dir"]) / "config.yaml").is_file()


def test_ground_truth_mode_uses_true_identities(tiny_synthetic, tmp_path):
    from unreid.data.datasets import load_dataset

    cfg = tiny_config(tiny_synthetic, tmp_path, "train.ground_truth=true")
    train_samples = load_dataset("synthetic", tiny_synthetic).train
    labels = clustered(cfg, torch.zeros(len(train_samples), 4), train_samples)
    pids = sorted({s.pid for s in train_samples})
    assert labels.num_clusters == len(pids) and labels.num_outliers == 0
    assert labels.quality([s.pid for s in train_samples])["ari"] == pytest.approx(1.0)


def test_unlabeled_data_refuses_ground_truth_mode(tmp_path):
    from unreid.data.samples import Sample

    cfg = load_config("demo", ["train.ground_truth=true"])
    with pytest.raises(ValueError, match="ground_truth"):
        clustered(cfg, torch.zeros(2, 4), [Sample("a.jpg", 0), Sample("b.jpg", 1)])


def test_infomap_clusterer_is_wired(tmp_path):
    from unreid.data.samples import Sample

    cfg = load_config("cluster_contrast/market1501_infomap")
    g = torch.Generator().manual_seed(0)
    centres = torch.nn.functional.normalize(torch.randn(4, 16, generator=g), dim=1)
    feats = centres.repeat_interleave(8, 0) + 0.05 * torch.randn(32, 16, generator=g)
    feats = torch.nn.functional.normalize(feats, dim=1)
    samples = [Sample(f"{i}.jpg", 0, i // 8) for i in range(32)]
    labels = clustered(cfg, feats, samples)
    assert labels.num_clusters == 4 and labels.num_outliers == 0
    assert labels.quality([s.pid for s in samples])["ari"] == pytest.approx(1.0)


def test_trains_on_unlabeled_camera_folders(tiny_synthetic, tmp_path):
    import shutil

    from unreid.data.datasets import load_dataset

    root = tmp_path / "footage"
    names = ["cam1", "カメラ 2", "<cam & 3>"]  # the report shows these, escaped
    for s in load_dataset("synthetic", tiny_synthetic).train:
        cam_dir = root / names[s.camera]
        cam_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy(s.path, cam_dir / f"{Path(s.path).stem}_x.jpg")  # pid stays hidden
    cfg = tiny_config(
        tmp_path,
        tmp_path / "runs",
        "data.dataset=folder",
        f"data.root={root}",
        "data.holdout_ids=0",
        "train.epochs=1",
        "train.iters=2",
        "eval.select_best_on=none",
    )
    summary = train(cfg, progress=False)
    record = json.loads((Path(summary["run_dir"]) / "log.jsonl").read_text().splitlines()[-1])
    assert summary["final_test"] is None and "pseudo_label_quality" not in record
    assert record["clusters"] >= 1 and (Path(summary["run_dir"]) / "last.pth").is_file()
    run_dir = Path(summary["run_dir"])
    sheets = json.loads((run_dir / "pseudo_labels.json").read_text())
    assert sheets["camera_names"] == sorted(names)  # what camera index i was called
    from unreid.report import write_report

    page = write_report(run_dir).read_text(encoding="utf-8")
    assert "カメラ 2</div>" in page and "&lt;cam &amp; 3&gt;</div>" in page
    assert "<cam & 3>" not in page


def logged(summary: dict) -> list[dict]:
    return [
        json.loads(x) for x in (Path(summary["run_dir"]) / "log.jsonl").read_text().splitlines()
    ]


def test_gcl_scl_clusters_refined_features_in_the_loop(tiny_synthetic, tmp_path, monkeypatch):
    """The engine clusters what the method hands it: 2C-d GCL features when CR is on."""
    import unreid.engine.loop as loop

    seen = []
    real = loop.make_pseudo_labels
    monkeypatch.setattr(
        loop,
        "make_pseudo_labels",
        lambda n, f, c, **kw: seen.append(f.shape) or real(n, f, c, **kw),
    )
    cfg = tiny_config(
        tiny_synthetic, tmp_path, "method=gcl_scl", "gcl_scl.graph=knn", "train.epochs=1",
        "train.iters=2",
    )  # fmt: skip
    summary = train(cfg, progress=False)
    assert seen and seen[0][1] == 2 * 512  # resnet18 features, concatenated with refined
    ckpt = load_checkpoint(Path(summary["run_dir"]) / "last.pth")
    assert "gcl.theta.0.weight" in ckpt["method"]
    # the epoch's diagnostics reach log.jsonl, truth-based ones included (synthetic ids)
    (record,) = [r for r in logged(summary) if "diagnostics" in r]
    diag = record["diagnostics"]
    assert 0 <= diag["top_same_identity"] <= 1 and diag["attention_entropy"] > 0
    assert -1 <= diag["memory_start_cosine"] <= 1 and "refined_memory_start_cosine" in diag


# These read the method's learning run (tests/learning_runs.py), trained once for the
# learning and exact-resume tests, on the worker that runs those (`xdist_group`).
@pytest.mark.xdist_group("learning-csa_hps")
def test_csa_hps_runs_in_the_loop(learning_runs):
    run = learning_runs.get("csa_hps", "trained").folder
    ckpt = load_checkpoint(run / "last.pth")
    assert "saa.query" in ckpt["method"] and ckpt["method"]["memory.bank"].shape[1] == 512
    records = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    impure = [r["diagnostics"]["impure_fraction"] for r in records if "diagnostics" in r]
    assert len(impure) == len(records) and all(0 <= f <= 1 for f in impure)  # every epoch


@pytest.mark.xdist_group("learning-cap")
def test_cap_adds_the_inter_camera_term_from_its_epoch(learning_runs):
    run = learning_runs.get("cap", "trained").folder  # cap/demo: inter_start_epoch=2
    assert load_config("cap/demo").cap.inter_start_epoch == 2
    records = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    losses = [r["losses"] for r in records if "losses" in r]
    assert [set(x) for x in losses] == [
        {"cluster_nce", "intra_camera"},
        {"cluster_nce", "intra_camera"},
        {"cluster_nce", "intra_camera", "inter_camera"},
    ]
    ckpt = load_checkpoint(run / "last.pth")
    assert ckpt["method"]["proxies.rows.bank"].shape[0] >= ckpt["method"]["memory.bank"].shape[0]


def test_camera_aware_method_refuses_single_camera_data(tiny_synthetic, tmp_path):
    import shutil

    from unreid.data.datasets import load_dataset

    cam_dir = tmp_path / "one_camera" / "cam1"
    cam_dir.mkdir(parents=True)
    for s in load_dataset("synthetic", tiny_synthetic).train[:40]:
        shutil.copy(s.path, cam_dir / Path(s.path).name)
    cfg = tiny_config(
        tmp_path,
        tmp_path / "runs",
        "method=cap",
        "data.dataset=folder",
        f"data.root={cam_dir.parent}",
        "data.holdout_ids=0",
        "eval.select_best_on=none",
    )
    with pytest.raises(ValueError, match="method='cap' needs camera ids.*'folder'"):
        train(cfg, progress=False)


def test_domain_adaptation_mixes_halves_and_extracts_the_source_once(
    tiny_synthetic, tiny_synthetic_b, tmp_path, monkeypatch
):
    from unreid.data.datasets import load_dataset
    from unreid.methods.spcl_uda import SpCLUDA

    seen, sources = [], []
    real_losses, real_start = SpCLUDA.losses, SpCLUDA.start_source

    def spy_losses(self, batch):
        seen.append((batch.source_count, len(batch.features), batch.targets.tolist()))
        return real_losses(self, batch)

    monkeypatch.setattr(SpCLUDA, "losses", spy_losses)
    monkeypatch.setattr(
        SpCLUDA, "start_source", lambda s, f, y: sources.append(len(f)) or real_start(s, f, y)
    )
    cfg = tiny_config(
        tiny_synthetic_b,
        tmp_path,
        "method=spcl_uda",
        "data.source=synthetic",
        f"data.source_root={tiny_synthetic}",
        "model.dsbn=true",
        "data.holdout_ids=0",
        "train.epochs=2",
        "train.iters=2",
        "train.batch_size=16",
        "eval.every=10",
    )
    summary = train(cfg, progress=False)
    source = load_dataset("synthetic", tiny_synthetic).train
    assert sources == [len(source)]  # carried after the first epoch
    assert len(seen) == 4 and all(n == 8 and b == 16 for n, b, _ in seen)
    n_source_ids = len({s.pid for s in source})
    assert all(max(t[:8]) < n_source_ids for _, _, t in seen)
    ckpt = load_checkpoint(Path(summary["run_dir"]) / "last.pth")
    assert int(ckpt["method"]["num_source"]) == n_source_ids
    assert ckpt["method"]["memory.bank"].shape[0] > n_source_ids
    assert "neck.source.running_mean" in ckpt["model"]
    assert summary["final_test"] is not None  # evaluated on the target's test split
    from unreid.cli import main  # `unreid eval` rebuilds the DSBN model from the checkpoint

    assert main(["eval", "--checkpoint", str(Path(summary["run_dir"]) / "last.pth")]) == 0
