"""The runs of `benchmarks/methods.py`: one `unreid train` subprocess per (row, seed).

Kept apart from the table so the bookkeeping that makes a benchmark resumable (a run's
folder says whether it finished, and with what) is read in one place: a rerun reads
finished runs back from their `log.jsonl` and trains only the others.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from method_table import RunResult


@dataclass(frozen=True)
class Planned:
    """One (row, seed) run: its folder and the `unreid train` command line."""

    row: Any  # a methods.Row: name, label, preset
    seed: int
    run_dir: Path
    overrides: tuple[str, ...]

    @property
    def command(self) -> tuple[str, ...]:
        head = (sys.executable, "-m", "unreid", "train", "--config", self.row.preset)
        return (*head, "--out", str(self.run_dir), "--no-progress", "--overwrite", *self.overrides)


def read_result(p: Planned) -> RunResult | None:
    """The finished run's last-epoch test metrics from its folder; None if not finished."""
    config, log_path = p.run_dir / "config.yaml", p.run_dir / "log.jsonl"
    if not (config.is_file() and log_path.is_file()):
        return None
    epochs = (yaml.safe_load(config.read_text()) or {}).get("train", {}).get("epochs")
    records = [json.loads(x) for x in log_path.read_text().splitlines() if x.strip()]
    last = [r for r in records if r.get("epoch") == epochs and "test" in r]
    if epochs is None or not last:
        return None
    timing = p.run_dir / "benchmark.json"
    wall = json.loads(timing.read_text()).get("wall_s") if timing.is_file() else None
    test = last[-1]["test"]
    start = [r["test"]["mAP"] for r in records if r.get("epoch") == 0 and "test" in r]
    return RunResult(
        p.seed, p.run_dir, test["mAP"], test["rank1"], wall, start_mAP=start[0] if start else None
    )


def execute(p: Planned) -> RunResult:
    """Run one training subprocess, output into `train.log`; its result or its failure."""
    p.run_dir.mkdir(parents=True, exist_ok=True)
    log = p.run_dir / "train.log"
    (p.run_dir / "benchmark.json").unlink(missing_ok=True)
    started = time.time()
    with open(log, "w") as f:
        f.write(" ".join(p.command) + "\n")
        f.flush()
        rc = subprocess.run(p.command, stdout=f, stderr=subprocess.STDOUT).returncode
    wall = time.time() - started
    if rc != 0:
        lines = [x for x in log.read_text().splitlines() if x.strip()]
        return RunResult(p.seed, p.run_dir, error=f"exit {rc}: {lines[-1][:300]} (log {log})")
    (p.run_dir / "benchmark.json").write_text(
        json.dumps({"wall_s": round(wall, 1), "command": list(p.command)}, indent=1)
    )
    done = read_result(p)
    if done is None:
        return RunResult(p.seed, p.run_dir, error=f"no last-epoch test metrics (log {log})")
    return done


def describe(p: Planned, r: RunResult) -> str:
    if not r.ok:
        return f"{p.row.name} seed {p.seed}: FAILED {r.error}"
    wall = "" if r.wall_s is None else f" ({r.wall_s:.0f} s)"
    return f"{p.row.name} seed {p.seed}: mAP {100 * r.mAP:.1f} R1 {100 * r.rank1:.1f}{wall}"


def run_all(runs: list[Planned], jobs: int) -> dict[tuple[str, int], RunResult]:
    """Finished runs read back, the others executed `jobs` at a time (in list order)."""
    results: dict[tuple[str, int], RunResult] = {}
    todo = []
    for p in runs:
        done = read_result(p)
        if done is None:
            todo.append(p)
        else:
            results[p.row.name, p.seed] = done
    print(f"{len(results)} of {len(runs)} runs already finished, {len(todo)} to run "
          f"({jobs} at a time)", file=sys.stderr)  # fmt: skip
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {pool.submit(execute, p): p for p in todo}
        for i, fut in enumerate(as_completed(futures), 1):
            p = futures[fut]
            results[p.row.name, p.seed] = fut.result()
            print(f"[{i}/{len(todo)}] {describe(p, results[p.row.name, p.seed])}", file=sys.stderr)
    return results
