"""Method tables that hold across seeds: every method's demo-budget row over S seeds.

A single demo-budget run moves by 10-30 points with the seed, so one run per
method says little. This script trains each row (a label, a preset and extra
overrides, all in `ROWS` of method_rows.py) once per seed, prints test mAP / R1 as
mean ± sample std over the seeds, and the seed-paired difference against plain
Cluster Contrast (row − CC on the same seed: mean ± std, and in how many seeds
the row is ahead). The seed varied is `train.seed` (weights init, P×K sampler,
augmentation); the dataset stays the demo's.

    python benchmarks/methods.py                         # demo-budget table, seeds 0 1 2
    python benchmarks/methods.py --rows uda --markdown   # the domain-adaptation pair
    python benchmarks/methods.py --rows cc hhcl --seeds 0 1 2 3 4 --jobs 8   # on a GPU
    python benchmarks/methods.py --list                  # the rows and their presets

Rows come in groups, one table each, each with its own baseline row (always
run when any row of its group is): `demo` (synthetic set A, `unreid demo`'s;
baseline Cluster Contrast) and `uda` (target B, a second synthetic domain,
adapted from labelled A; baseline Cluster Contrast trained on B alone).
`--rows` takes row and group names. A row named explicitly whose preset does
not exist stops the script before anything runs, naming the preset; rows
reached through a group name or the default are skipped with a printed note,
so the table works while presets are still being written.

Each (row, seed) run is a subprocess (`python -m unreid train`) in its own
folder, `<out>/<row>-<hash>/seed<N>/` (the hash covers the preset and every
override but the seed, so changed `--set` values never reuse old runs), with
its output in `train.log` and its wall time in `benchmark.json`. Results are
read back from `log.jsonl`, so a rerun skips finished runs and restarts
unfinished ones (`--overwrite` of that folder only); a failed run is listed
under the table with its log and makes the exit status 1. Every finished run
(and every finished run read back that is not there yet) appends one JSON line to
`--results` (default `benchmarks/results/methods.jsonl`, committed: row, regime,
overrides and their hash, seed, commit, machine, torch, mAP at start, mAP, R1, wall
time), from which `benchmarks/tables.py` generates the docs' tables; `--no-record`
keeps a trial out of it. Runs go seed by seed,
so an interrupted benchmark has whole seeds to pair. `--jobs J` runs J at once
with `train.threads` = cores // J (default: 1 on a CPU, cores // 2 with CUDA).

`--regime pretrained` is the CPU's stand-in for ImageNet weights: the preset
`cluster_contrast/pretrain_demo` is trained once with the true identities on a third
synthetic domain, P (other people, cool and bright), and every row then trains
unsupervised on A from its `last.pth` (`model.pretrained=...`, so the rows' folders differ
from the random-init ones). The column "mAP at start" is each row's test mAP before
training (epoch 0), so what a method adds to its starting weights is visible.

The synthetic sets are written into the cache folder (`UNREID_CACHE`, default
~/.cache/unreid) when missing, as `unreid demo` does; `--data-a` / `--data-b`
use existing folders instead.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

from method_rows import BASELINES, OUT, REGIMES, ROWS, SETS, TITLES, Row, pretraining_row
from method_runs import Planned, record, run_all
from method_table import RunResult, failures, group_table, row_stats
from results_file import METHODS_RESULTS

from unreid.cli.common import cache_dir


class BenchmarkError(Exception):
    """A request the script refuses before running anything; the message says why."""


def preset_exists(name: str) -> bool:
    from unreid.presets import list_presets

    return name in list_presets()


def choose_baselines(names: list[str] | None) -> dict[str, str]:
    """Each group's baseline: the default one, or the row `--baseline` names for its group."""
    by_name = {r.name: r for r in ROWS}
    chosen = dict(BASELINES)
    for name in names or []:
        if name not in by_name:
            raise BenchmarkError(f"--baseline {name!r}: no such row; `--list` names them")
        group = by_name[name].group
        if chosen[group] != BASELINES[group]:
            raise BenchmarkError(
                f"--baseline: two rows of group {group!r} ({chosen[group]}, {name})"
            )
        chosen[group] = name
    return chosen


def select_rows(
    names: list[str] | None, baselines: dict[str, str] = BASELINES
) -> tuple[list[Row], list[str]]:
    """The rows to run (with their groups' baselines) and notes on rows skipped.

    A row named explicitly must have its preset; a group's rows without one are skipped.
    """
    by_name = {r.name: r for r in ROWS}
    asked: list[tuple[Row, bool]] = []  # (row, named explicitly)
    for name in names or ["demo"]:
        if name in BASELINES:
            asked += [(r, False) for r in ROWS if r.group == name and r.default]
        elif name in by_name:
            asked.append((by_name[name], True))
        else:
            known = ", ".join([*BASELINES, *by_name])
            raise BenchmarkError(f"no row or group named {name!r}; known: {known}")
    for group in {r.group for r, _ in asked}:
        asked.insert(0, (by_name[baselines[group]], True))
    rows: list[Row] = []
    notes: list[str] = []
    for row, explicit in asked:
        if row in rows:
            continue
        if not preset_exists(row.preset):
            if explicit:
                raise BenchmarkError(
                    f"row {row.name!r} ({row.label}) needs preset {row.preset!r}, which does "
                    "not exist (`unreid presets` lists them)"
                )
            notes.append(f"skipped {row.name} ({row.label}): no preset {row.preset!r} (yet)")
            continue
        rows.append(row)
    order = {r.name: i for i, r in enumerate(ROWS)}
    return sorted(rows, key=lambda r: order[r.name]), notes


def prepare_data(roles: set[str], given: dict[str, str | None]) -> dict[str, Path]:
    """Folder of each set needed: given ones as they are, cached ones written when missing."""
    from unreid.data.synthetic import is_generated
    from unreid.data.synthetic_parallel import generate_synthetic

    roots: dict[str, Path] = {}
    for role in sorted(roles):
        if given.get(role):
            root = Path(given[role])  # type: ignore[arg-type]
            if not root.is_dir():
                raise BenchmarkError(f"--data-{role.lower()} {root}: no such folder")
        else:
            folder, synth = SETS[role]
            root = cache_dir() / folder
            if not is_generated(root, synth):
                print(f"writing synthetic set {role} into {root}", file=sys.stderr)
                generate_synthetic(root, synth)
        roots[role] = root.resolve()
    return roots


def data_overrides(row: Row, roots: dict[str, Path]) -> list[str]:
    if row.data == "A->B":
        source = ["data.source=synthetic", f"data.source_root={roots['A']}"]
        return [*source, f"data.root={roots['B']}"]
    return [f"data.root={roots[row.data]}"]


def plan(
    row: Row, seeds: list[int], out: Path, roots: dict[str, Path], extra: list[str], threads: int
) -> list[Planned]:
    base = [*row.overrides, *data_overrides(row, roots)]
    key = json.dumps({"preset": row.preset, "overrides": [*base, *extra]})
    folder = out / f"{row.name}-{hashlib.sha1(key.encode()).hexdigest()[:8]}"
    # threads before the user's overrides, so an explicit --set train.threads wins
    per_run = [f"train.threads={threads}", *extra]
    return [
        Planned(row, seed, folder / f"seed{seed}", (*base, f"train.seed={seed}", *per_run))
        for seed in seeds
    ]


def tables(
    rows: list[Row],
    seeds: list[int],
    results: dict[tuple[str, int], RunResult],
    extra: list[str],
    markdown: bool,
    given: dict[str, str | None],
    regime: str = "random",
    baselines: dict[str, str] = BASELINES,
) -> tuple[str, list[str]]:
    """One table per group, each under a header saying what was varied and what was fixed."""
    by_name = {r.name: r for r in rows}
    out, failed = [], []
    for group in [g for g in baselines if any(r.group == g for r in rows)]:
        base_row = by_name[baselines[group]]
        base = [results[base_row.name, s] for s in seeds]
        stats = [
            row_stats(r.label, [results[r.name, s] for s in seeds], None if r is base_row else base)
            for r in rows
            if r.group == group
        ]
        title = f"Methods, demo budget ({group}): {TITLES[group]}"
        title += "".join(f"; set {k} read from {v}" for k, v in given.items() if v)
        title += f"; {REGIMES[regime]}"
        out.append(group_table(title, seeds, base_row.label, stats, extra, markdown))
        failed += failures(stats)
    return "\n".join(out), failed


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def auto_jobs() -> int:
    """1 on a CPU (runs share the cores anyway); half the cores with CUDA (2 threads each)."""
    import torch

    return max(1, cores() // 2) if torch.cuda.is_available() else 1


def validate(runs: list[Planned]) -> None:
    """Load each row's config once here, so a mistyped --set stops before hours of runs."""
    from unreid.config import load_config

    for p in {r.row.name: r for r in runs}.values():
        try:
            load_config(p.row.preset, list(p.overrides))
        except Exception as err:
            raise BenchmarkError(f"row {p.row.name!r} ({p.row.preset}): {err}") from None


def check_pretrained_request(rows: list[Row], overrides: list[str]) -> None:
    """The pretrained regime sets every row's starting weights; it refuses another source.

    Rows with domain-specific BN start from the same plain network as the others: the
    model converts each BatchNorm into a source and a target copy after loading the
    weights (`ReidModel`, as SpCL's code converts its pretrained ResNet), so both domains
    begin from the pretrained statistics.
    """
    if any(o.split("=")[0].strip() == "model.pretrained" for o in overrides):
        raise BenchmarkError("model.pretrained is what --regime pretrained sets; do not --set it")


def pretraining_runs(
    rows: list[Row], out: Path, roots: dict[str, Path], extra: list[str], regime: str
) -> dict[str, Planned]:
    """Each row's pretraining run (one per arch, alone before the rows: all the cores)."""
    if regime != "pretrained":
        return {}
    by_row = {}
    for r in rows:
        try:
            by_row[r.name] = pretraining_row(r)
        except KeyError as err:
            raise BenchmarkError(err.args[0]) from None
    planned = {p: plan(p, [0], out, roots, extra, cores())[0] for p in set(by_row.values())}
    return {name: planned[p] for name, p in by_row.items()}


def start_from(pretrainings: dict[str, Planned], row: Row) -> list[str]:
    if row.name not in pretrainings:
        return []
    return [f"model.pretrained={pretrainings[row.name].run_dir / 'last.pth'}"]


def pretrain(p: Planned, results: Path | None = None) -> bool:
    """Train the regime's starting weights once (read back when finished); False if it failed."""
    done = run_all([p], 1, results, "pretrained", "pretraining")[p.row.name, p.seed]
    if not done.ok:
        print(f"pretraining on set P failed ({p.row.name}), so its rows cannot start: "
              f"{done.error}", file=sys.stderr)  # fmt: skip
        return False
    untrained = "" if done.start_mAP is None else f", from {100 * done.start_mAP:.1f} untrained"
    print(
        f"pretrained weights: {p.run_dir / 'last.pth'} (test mAP on set P "
        f"{100 * done.mAP:.1f}{untrained})",
        file=sys.stderr,
    )
    return True


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rows", nargs="+", help="row or group names (default: the demo group)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="train.seed values")
    ap.add_argument("--jobs", type=int, default=0, help="runs at once (0: auto)")
    ap.add_argument("--out", default=str(OUT), help=f"folder of the run folders (default {OUT})")
    ap.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE", dest="overrides",
                    help="config overrides for every run (e.g. train.epochs=4)")  # fmt: skip
    ap.add_argument("--data-a", help="synthetic set A folder (default: the demo's, cached)")
    ap.add_argument("--data-b", help="synthetic set B folder (default: cached)")
    ap.add_argument("--data-p", help="pretraining set P folder (default: cached)")
    ap.add_argument("--regime", choices=tuple(REGIMES), default="random",
                    help="random init, or start from weights pretrained on set P (trained "
                    "once, then read back)")  # fmt: skip
    ap.add_argument("--baseline", nargs="+", metavar="ROW",
                    help="pair against this row instead of its group's default baseline, "
                    "which is then not run (e.g. --rows uda_spcl --baseline uda_spcl_cc)")  # fmt: skip
    ap.add_argument("--results", default=os.environ.get("UNREID_BENCH_RESULTS") or str(METHODS_RESULTS),
                    help="results file every finished run appends its line to (default: the "
                    "committed benchmarks/results/methods.jsonl, or $UNREID_BENCH_RESULTS; "
                    "benchmarks/tables.py reads it)")  # fmt: skip
    ap.add_argument("--no-record", action="store_true", help="append no results line")
    ap.add_argument("--record-only", action="store_true",
                    help="run nothing: append the lines of the planned runs that have finished "
                    "or failed and are not in --results yet, then print the table")  # fmt: skip
    ap.add_argument("--markdown", action="store_true", help="print Markdown tables")
    ap.add_argument("--list", action="store_true", help="list the rows and exit")
    return ap.parse_args(argv)


def list_rows() -> str:
    lines = []
    for r in ROWS:
        tag = "baseline" if BASELINES[r.group] == r.name else ("" if r.default else "extra")
        flags = " ".join(r.overrides)
        lines.append(
            f"{r.group:5s} {r.name:22s} {r.preset:20s} {tag:9s} {r.label} {flags}".rstrip()
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.seeds = list(dict.fromkeys(args.seeds))  # a seed twice would share one run folder
    if args.list:
        print(list_rows())
        return 0
    try:
        if any(o.split("=")[0].strip() == "train.seed" for o in args.overrides):
            raise BenchmarkError("train.seed is what --seeds varies; do not --set it")
        baselines = choose_baselines(args.baseline)
        rows, notes = select_rows(args.rows, baselines)
        for note in notes:
            print(note, file=sys.stderr)
        roles = {part for r in rows for part in r.data.split("->")}
        if args.regime == "pretrained":
            check_pretrained_request(rows, args.overrides)
            roles.add("P")
        given = {"A": args.data_a, "B": args.data_b, "P": args.data_p}
        roots = prepare_data(roles, given)
        jobs = args.jobs or auto_jobs()
        threads = max(1, cores() // jobs)
        pretrainings = pretraining_runs(rows, Path(args.out), roots, args.overrides, args.regime)
        extra = {r.name: [*start_from(pretrainings, r), *args.overrides] for r in rows}
        per_row = [plan(r, args.seeds, Path(args.out), roots, extra[r.name], threads) for r in rows]
        runs = [per_row[i][k] for k in range(len(args.seeds)) for i in range(len(rows))]
        validate([*dict.fromkeys(pretrainings.values()), *runs])
    except BenchmarkError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    kept = None if args.no_record else Path(args.results)
    if args.record_only:
        pre = list(dict.fromkeys(pretrainings.values()))
        added = record(pre, kept, args.regime, "pretraining") + record(
            runs, kept, args.regime, "row"
        )
        print(f"recorded {added} new lines in {kept}", file=sys.stderr)
        return 0
    if not all(pretrain(p, kept) for p in dict.fromkeys(pretrainings.values())):
        return 1
    results = run_all(runs, jobs, kept, args.regime)
    text, failed = tables(
        rows, args.seeds, results, args.overrides, args.markdown, given, args.regime, baselines
    )
    print(text, end="")
    if failed:
        print("\nfailed runs (not in the statistics):\n" + "\n".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
