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
from results_file import append_result, provenance

# overrides that say where a run's files are, not what it is: left out of its results line
LOCAL_KEYS = ("data.root", "data.source_root", "train.threads", "train.seed")


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


def start_map(p: Planned) -> float | None:
    """Test mAP at epoch 0 from the run's log, when it was evaluated."""
    log_path = p.run_dir / "log.jsonl"
    if not log_path.is_file():
        return None
    records = [json.loads(x) for x in log_path.read_text().splitlines() if x.strip()]
    start = [r["test"]["mAP"] for r in records if r.get("epoch") == 0 and "test" in r]
    return start[0] if start else None


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


def cuda_device() -> str | None:
    """The GPU the runs will use, named for the results line (None on a CPU)."""
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def result_line(p: Planned, regime: str, role: str) -> dict[str, Any] | None:
    """The results-file line of a finished run, from its folder; None if it has none.

    The overrides kept are what defines the run (the row's, the user's `--set`); paths
    and thread counts are dropped, and the weights it started from are named by their
    run folder (`<row>-<hash>/seed<N>`), which the results file also holds.
    """
    done = read_result(p)
    timing = p.run_dir / "benchmark.json"
    if not timing.is_file():
        return None
    meta = json.loads(timing.read_text())
    if "commit" not in meta or "finished" not in meta:
        return None  # timed by an older benchmark that recorded no provenance
    if done is None and "error" not in meta:
        return None  # unfinished: neither measured nor failed
    if done is None:  # a failed run is a result too: its line says how it ended
        done = RunResult(p.seed, p.run_dir, error=meta["error"], start_mAP=start_map(p))
    overrides = []
    for o in p.overrides:
        key, _, value = o.partition("=")
        if key in LOCAL_KEYS:
            continue
        if key == "model.pretrained":
            weights = Path(value)
            o = f"model.pretrained=<{weights.parent.parent.name}/{weights.parent.name}>"
        overrides.append(o)
    return {
        "row": p.row.name, "label": p.row.label, "group": p.row.group, "regime": regime,
        "role": role, "preset": p.row.preset, "overrides": overrides,
        "run": p.run_dir.parent.name, "seed": p.seed,
        "start_mAP": done.start_mAP, "mAP": done.mAP, "rank1": done.rank1,
        "wall_s": meta.get("wall_s"), "commit": meta["commit"], "machine": meta["machine"],
        "torch": meta["torch"], "finished": meta["finished"], "error": done.error,
    }  # fmt: skip


def record(runs: list[Planned], results: Path | None, regime: str, role: str) -> int:
    """Append the line of every finished run not yet in `results`; how many were added."""
    if results is None:
        return 0
    lines = [line for p in runs if (line := result_line(p, regime, role)) is not None]
    return sum(append_result(results, line) for line in lines)


def execute(p: Planned) -> RunResult:
    """Run one training subprocess, output into `train.log`; its result or its failure."""
    p.run_dir.mkdir(parents=True, exist_ok=True)
    log = p.run_dir / "train.log"
    (p.run_dir / "benchmark.json").unlink(missing_ok=True)
    started, started_on = time.time(), provenance(cuda_device())
    with open(log, "w") as f:
        f.write(" ".join(p.command) + "\n")
        f.flush()
        rc = subprocess.run(p.command, stdout=f, stderr=subprocess.STDOUT).returncode
    wall = time.time() - started
    finished = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if rc != 0:
        lines = [x for x in log.read_text().splitlines() if x.strip()]
        error = f"exit {rc}: {lines[-1][:300]}"
        failed = {"wall_s": round(wall, 1), "finished": finished, **started_on, "error": error}
        (p.run_dir / "benchmark.json").write_text(json.dumps(failed, indent=1))
        return RunResult(p.seed, p.run_dir, error=f"{error} (log {log})")
    timing = {
        "wall_s": round(wall, 1),
        "finished": finished,
        **started_on,
        "command": list(p.command),
    }
    (p.run_dir / "benchmark.json").write_text(json.dumps(timing, indent=1))
    done = read_result(p)
    if done is None:
        return RunResult(p.seed, p.run_dir, error=f"no last-epoch test metrics (log {log})")
    return done


def describe(p: Planned, r: RunResult) -> str:
    if not r.ok:
        return f"{p.row.name} seed {p.seed}: FAILED {r.error}"
    wall = "" if r.wall_s is None else f" ({r.wall_s:.0f} s)"
    return f"{p.row.name} seed {p.seed}: mAP {100 * r.mAP:.1f} R1 {100 * r.rank1:.1f}{wall}"


def run_all(
    runs: list[Planned],
    jobs: int,
    results: Path | None = None,
    regime: str = "random",
    role: str = "row",
) -> dict[tuple[str, int], RunResult]:
    """Finished runs read back, the others executed `jobs` at a time (in list order).

    Each run that has finished (now or before) leaves its line in `results` when given.
    """
    done: dict[tuple[str, int], RunResult] = {}
    todo = []
    for p in runs:
        finished = read_result(p)
        if finished is None:
            todo.append(p)
        else:
            done[p.row.name, p.seed] = finished
    print(f"{len(done)} of {len(runs)} runs already finished, {len(todo)} to run "
          f"({jobs} at a time)", file=sys.stderr)  # fmt: skip
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {pool.submit(execute, p): p for p in todo}
        for i, fut in enumerate(as_completed(futures), 1):
            p = futures[fut]
            done[p.row.name, p.seed] = fut.result()
            print(f"[{i}/{len(todo)}] {describe(p, done[p.row.name, p.seed])}", file=sys.stderr)
            record([p], results, regime, role)
    record(runs, results, regime, role)  # runs read back that an earlier benchmark finished
    return done
