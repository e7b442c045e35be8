"""benchmarks/diagnose.py: per-epoch means and the collapse summary, worked out by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from bench_scripts import load_script

dg = load_script("diagnose.py", "bench_diagnose")


def record(epoch, clusters, largest, ari, diagnostics=None, test=None):
    r = {
        "epoch": epoch,
        "clusters": clusters,
        "cluster_sizes": {"samples": 100, "size_max": largest},
        "pseudo_label_quality": {"ari": ari},
    }
    if diagnostics:
        r["diagnostics"] = diagnostics
    if test is not None:
        r["test"] = {"mAP": test, "rank1": test}
    return r


def write_seed(root: Path, seed: int, records: list[dict], epochs: int = 2, pretrained=None):
    run = root / f"seed{seed}"
    run.mkdir(parents=True)
    config = {"train": {"epochs": epochs}, "model": {"pretrained": pretrained}}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    lines = [{"epoch": 0, "test": {"mAP": 0.1, "rank1": 0.2}}, *records]
    (run / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))


@pytest.fixture
def out(tmp_path):
    row = tmp_path / "gcl-abc123"
    write_seed(row, 1, [record(1, 10, 60, 0.1, {"top_same_identity": 0.5}),
                        record(2, 20, 20, 0.5, {"top_same_identity": 0.7}, test=0.8)])  # fmt: skip
    write_seed(row, 2, [record(1, 30, 30, 0.3, {"top_same_identity": 0.3}),
                        record(2, 40, 10, 0.7, test=0.6)])  # fmt: skip
    write_seed(row, 3, [record(1, 99, 99, 0.9)])  # still running: left out
    write_seed(tmp_path / "cc-def456", 1, [record(1, 5, 5, 0.2), record(2, 6, 5, 0.4, test=0.9)],
               pretrained="/w/last.pth")  # fmt: skip
    return tmp_path


def test_per_epoch_means_and_summary_by_hand(out):
    folder = dg.read_folder(out / "gcl-abc123")
    assert folder.unfinished == [3] and sorted(folder.epochs) == [1, 2]
    assert folder.regime == "random init"
    keys, table = dg.per_epoch(folder)
    assert keys == ["clusters", "largest", "ari", "top_same_identity"]
    (e1, n1, v1), (e2, n2, v2) = table
    assert (e1, n1, e2, n2) == (1, 2, 2, 2)
    assert v1["clusters"] == pytest.approx(20) and v1["largest"] == pytest.approx(0.45)
    assert v1["ari"] == pytest.approx(0.2) and v1["top_same_identity"] == pytest.approx(0.4)
    assert v2["top_same_identity"] == pytest.approx(0.7)  # seed 2 logged none at epoch 2
    s = dg.summary(folder, giant=0.25)
    # seed 1: largest 0.6, 0.2 -> 1 epoch; seed 2: 0.3, 0.1 -> 1 epoch
    assert s["collapsed_epochs"] == pytest.approx(1.0) and s["seeds"] == 2
    assert s["mean_ari"] == pytest.approx((0.3 + 0.5) / 2)  # seeds' means 0.3 and 0.5
    assert s["last_ari"] == pytest.approx(0.6) and s["mAP"] == pytest.approx(0.7)
    assert dg.read_folder(out / "cc-def456").regime == "from /w/last.pth"


def test_seeds_keeps_only_those_seeds(out, capsys):
    folder = dg.read_folder(out / "gcl-abc123", seeds={2, 3})
    assert sorted(folder.epochs) == [2] and folder.unfinished == [3]
    assert dg.summary(folder, giant=0.25)["mAP"] == pytest.approx(0.6)
    assert dg.main(["--out", str(out), "--seeds", "2", "--markdown"]) == 0
    assert "seeds [2]" in capsys.readouterr().out


def test_cli_prints_the_tables_and_refuses_unknown_rows(out, capsys):
    assert dg.main(["--out", str(out), "--markdown"]) == 0
    text = capsys.readouterr().out
    assert "gcl-abc123 (random init; seeds [1, 2]; unfinished, left out: [3])" in text
    assert "| gcl-abc123 | random init | 2 | 1 | 0.400 | 0.600 | 70.0 |" in text
    with pytest.raises(SystemExit):
        dg.main(["--out", str(out), "--rows", "hhcl"])
    assert "rows ['hhcl']" in capsys.readouterr().err


def test_a_row_with_every_seed_still_running_prints_no_epochs(out, capsys):
    write_seed(out / "knn-0a0a0a", 1, [record(1, 7, 7, 0.2)])  # no last-epoch test yet
    assert dg.main(["--out", str(out)]) == 0  # plain text: widths from the header alone
    text = capsys.readouterr().out
    assert "knn-0a0a0a (random init; seeds []; unfinished, left out: [1])" in text
    assert "knn-0a0a0a  random init       0      –" in text  # a summary row of dashes


def test_a_broken_log_line_is_named(out):
    log = out / "cc-def456" / "seed1" / "log.jsonl"
    log.write_text(log.read_text() + "{not json\n")
    with pytest.raises(ValueError, match=r"seed1/log.jsonl:4: not a JSON record"):
        dg.read_folder(out / "cc-def456")
    assert math.isnan(dg.nanmean([]))
