"""Finished benchmark runs kept as data: one JSON line per run in a committed file.

Run folders are git-ignored and die with the machine that wrote them, so a figure
read from one cannot be checked later. Every finished run of `benchmarks/methods.py`
therefore leaves one line in `benchmarks/results/<name>.jsonl` (committed) saying
what ran (row, preset, overrides and their hash, seed), where and on what (commit,
machine, torch) and what it measured (test mAP before and after, rank-1, wall
time). `benchmarks/tables.py` turns those lines into the tables of the docs, and a
test checks that the docs show exactly what it generates.

Nothing here imports torch: the provenance of a run is taken when it starts
(`provenance()`, in the process that launches it) and written into the run's
`benchmark.json`, from which its line is made.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
METHODS_RESULTS = RESULTS / "methods.jsonl"
# the keys every line carries (tests and tables.py rely on them)
FIELDS = (
    "row", "label", "group", "regime", "role", "preset", "overrides", "run", "seed",
    "start_mAP", "mAP", "rank1", "wall_s", "commit", "machine", "torch", "finished", "error",
)  # fmt: skip


class ResultsError(Exception):
    """A results file that cannot be read: the message names the file and the line."""


def commit() -> str:
    """The repository's HEAD (12 hex digits), `+dirty` when tracked files differ from it."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "src"],
            cwd=root,
            capture_output=True,
            text=True,
        )
    except OSError:
        return "unknown (no git)"
    if head.returncode != 0:
        return "unknown (not a git checkout)"
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(device: str | None = None) -> str:
    """`<cpu model>, <n> cores` and the GPU when one runs the benchmark (`device`)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    text = f"{cpu_model()}, {cores} cores"
    return f"{text}; {device}" if device else text


def provenance(device: str | None = None) -> dict[str, str]:
    """What a run's line says about where it ran: commit, machine and torch version."""
    try:
        from importlib.metadata import version

        torch_version = version("torch")
    except Exception:  # noqa: BLE001 - a missing torch is recorded, not fatal here
        torch_version = "unknown"
    return {"commit": commit(), "machine": machine(device), "torch": torch_version}


def read_results(path: Path, fields: tuple[str, ...] = FIELDS) -> list[dict[str, Any]]:
    """Every line of a results file, each checked for the keys in `fields`."""
    if not path.is_file():
        return []
    records = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ResultsError(f"{path}:{i}: not JSON ({err.msg})") from None
        missing = [k for k in fields if k not in record]
        if missing:
            raise ResultsError(f"{path}:{i}: missing keys {missing} (expected {list(fields)})")
        records.append(record)
    return records


def append_result(path: Path, record: dict[str, Any], fields: tuple[str, ...] = FIELDS) -> bool:
    """Add one run's line unless the file already has it (same run folder, seed, finish time).

    Returns whether a line was written; a run re-trained later (another finish time) is a
    new line, so a results file keeps every measurement and tables pick the newest.
    """
    missing = [k for k in fields if k not in record]
    if missing:
        raise ResultsError(f"record for {path}: missing keys {missing}")
    key = (record["run"], record["seed"], record["finished"])
    if any((r["run"], r["seed"], r["finished"]) == key for r in read_results(path, fields)):
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps({k: record[k] for k in fields}, ensure_ascii=False) + "\n")
    return True
