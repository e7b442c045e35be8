"""benchmarks/methods.py: its seed statistics by hand, missing presets, resuming, one real table.

The script is what the docs' method tables come from, so its arithmetic (sample
std, seed pairing, wins) is checked against numbers worked out here, and its
end-to-end table against what the run folders hold.
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from bench_scripts import load_script

import forked_cli
from tiny_runs import QUIET_RUN

bm = load_script("methods.py", "bench_methods")  # puts benchmarks/ on sys.path
import method_runs as mr  # noqa: E402
import method_table as mt  # noqa: E402
from results_file import read_results  # noqa: E402


def result(seed, m, r1=None, wall=None, error=None, start=None):
    r1 = r1 if r1 is not None else m
    return mt.RunResult(seed, Path(f"run{seed}"), m, r1, wall, error, start)


def test_statistics_match_hand_computed_values():
    cc = [result(0, 0.80, 0.90, 60), result(1, 0.70, 0.80, 70), result(2, 0.90, 1.00, 80)]
    row = [result(0, 0.85, 0.95, 100), result(1, 0.65), result(2, None, error="exit 1 (log x)")]
    base = mt.row_stats("CC", cc, None)
    # mean 0.8; deviations 0, -0.1, 0.1 -> sample variance 0.02 / 2 = 0.01
    assert (base.n, base.map_mean, base.map_std) == (3, pytest.approx(0.8), pytest.approx(0.1))
    assert base.wall_mean == pytest.approx(70) and base.paired is None
    stats = mt.row_stats("X", row, cc)
    # the failed seed is out: mAP 0.85, 0.65 -> mean 0.75, std sqrt(2 * 0.1^2 / 1)
    assert stats.n == 2 and stats.map_mean == pytest.approx(0.75)
    assert stats.map_std == pytest.approx(math.sqrt(0.02))
    assert stats.r1_mean == pytest.approx(0.80) and stats.r1_std == pytest.approx(math.sqrt(0.045))
    # paired on seeds 0 and 1: +0.05, -0.05 -> mean 0, std sqrt(2 * 0.05^2 / 1), one win
    p = stats.paired
    assert (p.n, p.wins) == (2, 1) and p.mean == pytest.approx(0.0)
    assert p.std == pytest.approx(math.sqrt(0.005))
    assert stats.wall_mean == pytest.approx(100)  # the untimed run does not count
    assert [r.seed for r in stats.failed] == [2]
    assert mt.failures([stats]) == ["X, seed 2: exit 1 (log x)"]


def test_paired_difference_uses_only_shared_seeds_and_strict_wins():
    p = mt.paired_difference({0: 0.5, 1: 0.6, 2: 0.7, 5: 0.9}, {0: 0.5, 1: 0.4, 2: 0.6, 3: 0.1})
    # seeds 0, 1, 2: differences 0, 0.2, 0.1 -> mean 0.1, std 0.1; a tie is no win
    assert (p.n, p.wins) == (3, 2)
    assert p.mean == pytest.approx(0.1) and p.std == pytest.approx(0.1)
    assert math.isnan(mt.sample_std([0.3])) and math.isnan(mt.mean([]))
    assert math.isnan(mt.paired_difference({1: 0.5}, {2: 0.5}).mean)


def test_table_text_and_markdown():
    cc = [result(0, 0.80, 0.90, 60), result(1, 0.70, 0.80, 70), result(2, 0.90, 1.00, 80)]
    row = [result(0, 0.85, 0.95, 100, start=0.2), result(1, 0.65, start=0.3)]
    row.append(result(2, None, error="boom", start=0.9))  # a failed run's start is left out
    stats = [mt.row_stats("CC", cc, None), mt.row_stats("X", row, cc)]
    text = mt.format_table(stats, "CC")
    assert "80.0 ± 10.0" in text and "(baseline)" in text and "1:10" in text
    assert "75.0 ± 14.1" in text and "+0.0 ± 7.1" in text and "1/2" in text
    assert "2 (1 failed)" in text
    md = mt.format_table(stats, "CC", markdown=True).splitlines()
    assert md[0].startswith("| method | seeds | mAP at start | mAP | R1 | Δ mAP vs CC |")
    assert md[2] == "| CC | 3 | – | 80.0 ± 10.0 | 90.0 ± 10.0 | (baseline) |  | 1:10 |"
    assert md[3].startswith("| X | 2 (1 failed) | 25.0 | 75.0 ± 14.1 |")


def test_a_missing_preset_is_an_error_by_name_or_a_note_in_a_group(monkeypatch, capsys):
    ghost = bm.Row("ghost", "Ghost method", "ghost/demo_missing")
    monkeypatch.setattr(bm, "ROWS", [*bm.ROWS, ghost])
    with pytest.raises(bm.BenchmarkError, match="ghost/demo_missing"):
        bm.select_rows(["ghost"])
    assert bm.main(["--rows", "ghost"]) == 2
    assert "'ghost/demo_missing'" in capsys.readouterr().err
    rows, notes = bm.select_rows(["demo"])  # asked through its group: skipped with a note
    assert ghost not in rows and rows[0].name == "cc"
    assert any("ghost/demo_missing" in n for n in notes)
    with pytest.raises(bm.BenchmarkError, match="no row or group named 'nope'"):
        bm.select_rows(["nope"])


def test_baseline_option_pairs_against_the_named_row_and_drops_the_default():
    bases = bm.choose_baselines(["uda_spcl_cc"])
    assert bases == {"demo": "cc", "uda": "uda_spcl_cc"}
    rows, _ = bm.select_rows(["uda_spcl"], bases)
    assert [r.name for r in rows] == ["uda_spcl", "uda_spcl_cc"]  # no CC-on-B-alone runs
    results = {
        ("uda_spcl", 1): result(1, 0.30), ("uda_spcl", 2): result(2, 0.50),
        ("uda_spcl_cc", 1): result(1, 0.40), ("uda_spcl_cc", 2): result(2, 0.45),
    }  # fmt: skip
    text, failed = bm.tables(rows, [1, 2], results, [], True, {}, "random", bases)
    table = table_rows(text)
    assert not failed and table["SpCL + CC UDA, A→B"][5] == "(baseline)"
    assert table["SpCL UDA, A→B"][5] == "-2.5 ± 10.6"  # -10, +5 -> mean -2.5, std 10.6
    with pytest.raises(bm.BenchmarkError, match="no such row"):
        bm.choose_baselines(["nope"])
    with pytest.raises(bm.BenchmarkError, match="two rows of group 'uda'"):
        bm.choose_baselines(["uda_spcl", "uda_spcl_cc"])


def fake_finished(run_dir: Path, seed: int, m: float, r1: float, wall: float) -> None:
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(f"train:\n  epochs: 1\n  seed: {seed}\n")
    record = {"epoch": 1, "test": {"mAP": m, "rank1": r1}}
    (run_dir / "log.jsonl").write_text(json.dumps(record) + "\n")
    (run_dir / "benchmark.json").write_text(json.dumps({"wall_s": wall}))


def test_resuming_skips_finished_runs(monkeypatch, tmp_path, capsys):
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    extra = ["train.epochs=1"]
    runs = bm.plan(bm.ROWS[0], [0, 1, 2], out, {"A": data.resolve()}, extra, threads=1)
    fake_finished(runs[0].run_dir, 0, 0.5, 0.6, 30.0)
    fake_finished(runs[1].run_dir, 1, 0.7, 0.8, 50.0)
    runs[2].run_dir.mkdir(parents=True)  # interrupted: a config, no last epoch in the log
    (runs[2].run_dir / "config.yaml").write_text("train:\n  epochs: 1\n")
    (runs[2].run_dir / "log.jsonl").write_text("")
    launched = []

    def execute(p):
        launched.append((p.row.name, p.seed, p.run_dir))
        return mt.RunResult(p.seed, p.run_dir, 0.9, 1.0, 40.0)

    monkeypatch.setattr(mr, "execute", execute)
    argv = ["--rows", "cc", "--seeds", "0", "1", "2", "--out", str(out), "--data-a", str(data)]
    assert bm.main([*argv, "--jobs", "1", "--set", *extra]) == 0
    assert launched == [("cc", 2, runs[2].run_dir)]
    captured = capsys.readouterr()
    assert "2 of 3 runs already finished, 1 to run" in captured.err
    # 50, 70, 90 -> 70.0 ± 20.0; R1 60, 80, 100; wall 30, 50, 40 s
    assert "70.0 ± 20.0" in captured.out and "80.0 ± 20.0" in captured.out
    assert "0:40" in captured.out


def table_rows(text: str) -> dict[str, list[str]]:
    rows = {}
    for line in text.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = cells
    return rows


def logged(out: Path, row: str) -> dict[int, tuple[float, float]]:
    """seed -> (mAP, R1) of the last epoch, read straight from each run's log.jsonl."""
    found = {}
    for log in sorted(out.glob(f"{row}-*/seed*/log.jsonl")):
        last = json.loads(log.read_text().splitlines()[-1])
        found[int(log.parent.name[4:])] = (last["test"]["mAP"], last["test"]["rank1"])
    return found


RUN = subprocess.run


def forked_unreid(command, *args, **kwargs):
    """`subprocess.run`, where `execute`'s `python -m unreid ...` commands are run by a
    child forked from this process (tests/forked_cli.py), with the same command line: each
    run is spared the seconds a fresh interpreter spends importing torch. Its output goes to
    the run's log, as the subprocess's would; other commands (git) run as they are."""
    if tuple(command[:3]) != (sys.executable, "-m", "unreid"):
        return RUN(command, *args, **kwargs)
    stdout, stderr = kwargs.pop("stdout"), kwargs.pop("stderr")
    assert not args and not kwargs and stderr == subprocess.STDOUT, (args, kwargs)
    done = forked_cli.run(list(command[3:]))
    stdout.write(done.stdout + done.stderr)
    return subprocess.CompletedProcess(command, done.returncode)


@pytest.mark.slow
def test_end_to_end_table_equals_the_run_folders_and_rows_start_from_the_pretraining(
    tiny_synthetic, tiny_synthetic_b, tmp_path, capsys, monkeypatch, results_file
):
    """One real benchmark: the pretrained regime (the random regime's path plus the
    pretraining run every row starts from), two rows, two seeds, two jobs; each training
    run is a process of its own with the command line the script builds."""
    out = tmp_path / "out"
    budget = [*QUIET_RUN, "eval.at_start=true", "train.epochs=1", "train.iters=2"]
    cmd = ["--regime", "pretrained"]
    cmd += ["--rows", "cc", "hhcl", "--seeds", "0", "1", "--jobs", "2", "--out", str(out)]
    cmd += ["--data-a", str(tiny_synthetic), "--data-p", str(tiny_synthetic_b)]
    cmd += ["--markdown", "--set", *budget]
    monkeypatch.setattr(mr.subprocess, "run", forked_unreid)
    assert bm.main(cmd) == 0, capsys.readouterr().err[-3000:]
    done = capsys.readouterr()
    rows = table_rows(done.out)
    cc, hhcl = logged(out, "cc"), logged(out, "hhcl")
    assert sorted(cc) == sorted(hhcl) == [0, 1]

    def pm(values: list[float], sign: str = "") -> str:
        return f"{100 * statistics.mean(values):{sign}.1f} ± {100 * statistics.stdev(values):.1f}"

    for label, runs, name in (("Cluster Contrast", cc, "cc"), ("HHCL", hhcl, "hhcl")):
        starts = []  # mAP at start: each run's epoch 0, the pretrained weights on set A
        for seed in (0, 1):
            log = next(out.glob(f"{name}-*/seed{seed}/log.jsonl")).read_text().splitlines()
            assert json.loads(log[0])["epoch"] == 0
            starts.append(json.loads(log[0])["test"]["mAP"])
        assert rows[label][1:5] == [
            "2",
            f"{100 * statistics.mean(starts):.1f}",
            pm([m for m, _ in runs.values()]),
            pm([r1 for _, r1 in runs.values()]),
        ]
    diffs = [hhcl[s][0] - cc[s][0] for s in (0, 1)]
    assert rows["HHCL"][5:7] == [pm(diffs, "+"), f"{sum(d > 0 for d in diffs)}/2"]
    assert "vary train.seed" in done.out
    assert "trained with true identities on synthetic set P" in done.out
    # the pretraining: once, with the true identities of set P; every row starts from it
    (pretrained,) = out.glob("pretrain-*/seed*")
    pre = yaml.safe_load((pretrained / "config.yaml").read_text())
    assert pre["train"]["ground_truth"] is True
    assert Path(pre["data"]["root"]) == tiny_synthetic_b.resolve()
    for seed in (0, 1):  # each run trained with its own seed, under the benchmark's budget
        for name in ("cc", "hhcl"):
            cfg = yaml.safe_load(next(out.glob(f"{name}-*/seed{seed}/config.yaml")).read_text())
            assert cfg["model"]["pretrained"] == str(pretrained / "last.pth")
            assert not cfg["train"].get("ground_truth")  # the rows themselves are unsupervised
            assert (cfg["train"]["seed"], cfg["train"]["iters"]) == (seed, 2)
    kept = read_results(results_file)  # one line per run, with what the table shows
    rows_kept = sorted((r["row"], r["seed"]) for r in kept if r["role"] == "row")
    assert rows_kept == [(n, s) for n in ("cc", "hhcl") for s in (0, 1)]
    assert [r["row"] for r in kept if r["role"] == "pretraining"] == ["pretrain"]
    for r in kept:
        assert r["regime"] == "pretrained" and r["commit"] != ""
        assert not any(o.startswith(("data.root=", "train.seed=")) for o in r["overrides"])
        if r["role"] == "row":
            assert (r["mAP"], r["rank1"]) == {"cc": cc, "hhcl": hhcl}[r["row"]][r["seed"]]
    assert bm.main(cmd) == 0  # again: every run is read back
    again = capsys.readouterr()
    assert "4 of 4 runs already finished" in again.err and again.out == done.out
    assert read_results(results_file) == kept  # read back, not recorded twice


def test_pretrained_regime_refuses_what_it_cannot_honour(capsys):
    argv = ["--regime", "pretrained", "--rows", "cc", "--set", "model.pretrained=x.pth"]
    assert bm.main(argv) == 2
    assert "model.pretrained is what --regime pretrained sets" in capsys.readouterr().err


def test_rows_do_not_start_when_pretraining_fails(monkeypatch, tmp_path, capsys):
    launched = []

    def execute(p):
        launched.append(p.row.name)
        return mt.RunResult(p.seed, p.run_dir, error="exit 1: boom (log x)")

    monkeypatch.setattr(mr, "execute", execute)
    data = tmp_path / "data"
    data.mkdir()
    argv = ["--regime", "pretrained", "--rows", "cc", "--seeds", "0", "--out", str(tmp_path)]
    argv += ["--data-a", str(data), "--data-p", str(data), "--jobs", "1"]
    assert bm.main(argv) == 1
    assert launched == ["pretrain"]
    assert "pretraining on set P failed" in capsys.readouterr().err


def planned_launches(monkeypatch, tmp_path, capsys, rows: list[str]) -> list[tuple]:
    """(row, run folder, overrides) of every run `--regime pretrained ROWS` launches, seed 0,
    each run answered with a made-up finished result instead of training."""
    launched = []

    def execute(p):
        launched.append((p.row.name, p.run_dir, p.overrides))
        return mt.RunResult(p.seed, p.run_dir, 0.5, 0.5, 1.0, start_mAP=0.25)

    monkeypatch.setattr(mr, "execute", execute)
    data = tmp_path / "data"
    data.mkdir()
    argv = ["--regime", "pretrained", *rows, "--seeds", "0", "--out", str(tmp_path), "--jobs", "1"]
    for role in ("a", "b", "p"):
        argv += [f"--data-{role}", str(data)]
    assert bm.main(argv) == 0, capsys.readouterr().err
    return launched


def test_a_row_that_sets_model_arch_starts_from_its_own_arch_pretraining(
    monkeypatch, tmp_path, capsys
):
    import method_rows as rows

    launched = planned_launches(monkeypatch, tmp_path, capsys, ["--rows", "cc_vit_small"])
    names = [name for name, *_ in launched]
    assert names == ["pretrain", "pretrain_vit_small", "cc", "cc_vit_small"]  # pretrainings first
    folder = {name: run_dir for name, run_dir, _ in launched}
    start = {name: [o for o in ov if o.startswith("model.pretrained=")] for name, _, ov in launched}
    assert start["cc"] == [f"model.pretrained={folder['pretrain'] / 'last.pth'}"]
    vit_start = folder["pretrain_vit_small"] / "last.pth"
    assert start["cc_vit_small"] == [f"model.pretrained={vit_start}"]
    assert rows.PRETRAINS["vit_small"].preset == "cluster_contrast/pretrain_demo_vit_small"
    # rows that leave model.arch alone keep the one ResNet pretraining (and its folders)
    by_name = {r.name: r for r in rows.ROWS}
    assert rows.pretraining_row(by_name["cc"]) is rows.PRETRAIN
    assert rows.pretraining_row(by_name["csa_hps"]) is rows.PRETRAIN
    assert rows.row_arch(by_name["cc_vit_small"]) == "vit_small"
    with pytest.raises(KeyError, match="no pretraining run"):
        rows.pretraining_row(rows.Row("x", "x", "demo", ("model.arch=vit_base",)))


def test_the_adaptation_rows_start_from_the_pretraining_dsbn_ones_included(
    monkeypatch, tmp_path, capsys
):
    rows = ["--rows", "uda", "uda_spcl_dsbn", "uda_spcl_cc_dsbn"]
    launched = planned_launches(monkeypatch, tmp_path, capsys, rows)
    names = [name for name, *_ in launched]
    assert names == ["pretrain", "uda_cc_target_only", "uda_spcl", "uda_spcl_cc",
                     "uda_spcl_dsbn", "uda_spcl_cc_dsbn"]  # fmt: skip
    weights = f"model.pretrained={launched[0][1] / 'last.pth'}"
    for name, _, overrides in launched[1:]:
        assert weights in overrides, name
        assert ("model.dsbn=true" in overrides) == name.endswith("_dsbn"), name
        adapting = name != "uda_cc_target_only"
        assert any(o.startswith("data.source_root=") for o in overrides) == adapting, name
