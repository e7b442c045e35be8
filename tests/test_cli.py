"""The `unreid` command line: plumbing, outputs and error messages (tiny budgets)."""

from __future__ import annotations

import json

import pytest

from unreid.cli import main


def test_presets_lists_demo(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out.split()
    assert "demo" in out and "cluster_contrast/market1501" in out


def test_histogram_baseline_eval(tiny_synthetic, capsys):
    assert (
        main(
            [
                "eval",
                "--baseline",
                "histogram",
                "--dataset",
                "synthetic",
                "--root",
                str(tiny_synthetic),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "histogram baseline on synthetic: mAP" in out


def test_unknown_override_is_a_clear_error(tiny_synthetic, capsys):
    code = main(["train", "--config", "demo", f"data.root={tiny_synthetic}", "train.epoch=1"])
    assert code == 2
    assert "unknown config key 'train.epoch'" in capsys.readouterr().err


def test_wrong_dataset_layout_is_a_clear_error(tmp_path, capsys):
    code = main(
        ["eval", "--baseline", "histogram", "--dataset", "market1501", "--root", str(tmp_path)]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "market1501" in err and str(tmp_path) in err


def test_synth_writes_a_loadable_set(tmp_path):
    out = tmp_path / "s"
    assert (
        main(
            [
                "synth",
                "--out",
                str(out),
                "--ids",
                "4",
                "--cameras",
                "2",
                "--distractors",
                "2",
                "--height",
                "32",
                "--width",
                "16",
            ]
        )
        == 0
    )
    meta = json.loads((out / "synthetic.json").read_text())
    assert meta["complete"] and meta["counts"]["train_ids"] == 2


@pytest.mark.slow
def test_demo_writes_summary_and_checkpoint_then_eval_reads_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("UNREID_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "demo"
    code = main(
        [
            "demo",
            "--out",
            str(out),
            "--ids",
            "16",
            "--no-progress",
            "data.height=64",
            "data.width=32",
            "data.workers=0",
            "data.holdout_ids=2",
            "cluster.k1=8",
            "cluster.k2=3",
            "train.epochs=1",
            "train.iters=2",
            "train.batch_size=16",
            "train.num_instances=4",
        ]
    )
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert {"histogram", "untrained", "trained", "seconds"} <= set(summary)
    assert 0.0 <= summary["trained"]["mAP"] <= 1.0
    printed = capsys.readouterr().out
    assert "histogram baseline" in printed and "Cluster Contrast" in printed
    assert (out / "last.pth").is_file() and (out / "config.yaml").is_file()
    assert (out / "report.html").is_file() and "report:" in printed  # written at the end
    assert main(["eval", "--checkpoint", str(out / "last.pth")]) == 0
    assert "mAP" in capsys.readouterr().out


def test_train_source_and_target_flags_set_the_adaptation_keys(monkeypatch, capsys):
    import unreid.engine

    seen = {}
    monkeypatch.setattr(
        unreid.engine, "train", lambda cfg, **kw: seen.update(cfg=cfg) or {"run_dir": "r"}
    )
    monkeypatch.setattr(
        "unreid.cli.train.write_report", lambda run_dir, **kw: f"{run_dir}/report.html"
    )
    argv = ["train", "--config", "spcl_uda/msmt17_to_market1501", "--source", "market1501"]
    assert main([*argv, "--target", "msmt17", "data.root=/x"]) == 0
    data = seen["cfg"].data
    assert (data.source, data.dataset, data.root) == ("market1501", "msmt17", "/x")
    assert main(["train", "--config", "demo", "--source", "synthetic"]) == 2
    assert "data.source" in capsys.readouterr().err  # only method=spcl_uda takes a source


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("methods", "hhcl"),
        ("datasets", "market1501"),
        ("backbones", "resnet50_ibn_a"),
        ("poolings", "gem"),
        ("memories", "topk"),
        ("clusterers", "infomap"),
        ("presets", "demo"),
    ],
)
def test_list_prints_each_registry(kind, expected, capsys):
    assert main(["list", kind]) == 0
    assert expected in capsys.readouterr().out.split()


def test_eval_of_a_bare_state_dict_is_a_clear_error(tmp_path, capsys):
    import torch

    path = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, path)
    assert main(["eval", "--checkpoint", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "not an unreid training checkpoint" in err


def test_eval_overrides_are_checked(tiny_synthetic, tmp_path, capsys):
    from unreid.checkpoint import save_checkpoint
    from unreid.config import load_config

    cfg = load_config("demo", [f"data.root={tiny_synthetic}"])
    save_checkpoint(tmp_path / "c.pth", model={}, config=cfg.to_dict())
    assert main(["eval", "--checkpoint", str(tmp_path / "c.pth"), "eval.select_best_on=x"]) == 2
    assert "eval.select_best_on='x': must be one of val, test, none" in capsys.readouterr().err


def test_overrides_on_both_sides_of_an_option(tmp_path, monkeypatch):
    seen = {}

    def fake_train(cfg, **kwargs):
        seen["cfg"] = cfg
        return {"run_dir": str(tmp_path / "x")}

    monkeypatch.setattr("unreid.engine.train", fake_train)
    monkeypatch.setattr("unreid.cli.train.write_report", lambda run_dir, **kw: "report.html")
    argv = [
        "train",
        "--config",
        "demo",
        "train.epochs=3",
        "--out",
        str(tmp_path / "x"),
        "train.iters=7",
    ]
    assert main(argv) == 0
    cfg = seen["cfg"]
    assert (cfg.train.epochs, cfg.train.iters, cfg.name) == (3, 7, "x")
    with pytest.raises(SystemExit):
        main(["train", "--config", "demo", "--bogus", "train.iters=7"])


def test_no_library_noise_unless_verbose():
    import subprocess
    import sys

    quiet = subprocess.run(
        [sys.executable, "-m", "unreid", "list", "clusterers"], capture_output=True, text=True
    )
    assert quiet.returncode == 0 and "dbscan" in quiet.stdout
    assert "Could not load library" not in quiet.stderr and "faiss" not in quiet.stderr


def test_train_writes_the_report_on_rank_0_only_and_not_with_no_report(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr("unreid.engine.train", lambda cfg, **kw: {"run_dir": str(tmp_path)})
    written = []
    monkeypatch.setattr(
        "unreid.cli.train.write_report", lambda run_dir, **kw: written.append(run_dir) or "r.html"
    )
    argv = ["train", "--config", "demo", "--out", str(tmp_path)]
    monkeypatch.delenv("RANK", raising=False)
    assert main(argv) == 0 and written == [str(tmp_path)]
    assert json.loads(capsys.readouterr().out)["report"] == "r.html"
    assert main([*argv, "--no-report"]) == 0 and len(written) == 1
    assert "report" not in json.loads(capsys.readouterr().out)
    # torchrun's other ranks: no second writer of report.html, no second summary printed
    monkeypatch.setenv("RANK", "1")
    assert main(argv) == 0 and len(written) == 1 and capsys.readouterr().out == ""
