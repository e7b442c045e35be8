"""benchmarks/reference_table.py: the official SpCL runs' per-epoch table, from the runner's
JSON, seeds side by side; a second file of one seed is refused, naming it."""

from __future__ import annotations

import json

import pytest
from bench_scripts import load_script

load_script("tables.py", "bench_tables_ref")  # puts benchmarks/ on sys.path
import reference_table as rt  # noqa: E402


def run(seed: int, aris: list[float], maps: list[float]) -> dict:
    epochs = [
        {"epoch": i, "clusters": 30 - i, "unclustered": 100 * i, "largest": 50 + i, "ari": a,
         "R_indep_threshold": 0.4722222}
        for i, a in enumerate(aris)
    ]  # fmt: skip
    evals = [{"after_epoch": i, "mAP": m} for i, m in enumerate(maps)]
    evals.append({"after_epoch": len(maps) - 1, "mAP": max(maps), "top1": 0.9})  # best ckpt
    return {"argv": f"--data-dir d -a resnet18 --seed {seed} --eval-step 1", "epochs": epochs,
            "evals": evals}  # fmt: skip


def rows_of(text: str) -> list[list[str]]:
    lines = [r for r in text.splitlines() if r.startswith("| ") and not r.startswith("| epoch")]
    return [[c.strip() for c in r.strip("|").split("|")] for r in lines]


def test_each_epoch_row_holds_the_seeds_values_in_seed_order(tmp_path, monkeypatch):
    monkeypatch.setattr(rt, "RESULTS", tmp_path)
    folder = tmp_path / "official"
    folder.mkdir()
    (folder / "seed1.json").write_text(json.dumps(run(1, [0.38, 0.09], [0.607, 0.464])))
    (folder / "seed0.json").write_text(json.dumps(run(0, [0.41, 0.05, 0.04], [0.5, 0.3, 0.2])))
    text = rt.generate(folder)
    assert "Seeds: 0 1." in text and "2 runs of" in text
    assert rows_of(text) == [
        ["1", "30 / 30", "0 / 0", "50 / 50", "0.41 / 0.38", "0.472 / 0.472", "50.0 / 60.7"],
        ["2", "29 / 29", "100 / 100", "51 / 51", "0.05 / 0.09", "0.472 / 0.472", "30.0 / 46.4"],
        ["3", "28 / –", "200 / –", "52 / –", "0.04 / –", "0.472 / –", "20.0 / –"],
    ]  # the best checkpoint's evaluation (with top1) is not an epoch's


def test_two_files_of_one_seed_are_refused_naming_the_second(tmp_path):
    for name in ("seed0.json", "seed0_again.json"):
        (tmp_path / name).write_text(json.dumps(run(0, [0.4], [0.5])))
    with pytest.raises(ValueError, match=r"seed0_again\.json: a second run of seed 0"):
        rt.read_runs(tmp_path)
