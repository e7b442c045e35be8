"""The docs' benchmark tables, generated from the committed results files.

A table in README.md or docs/ that shows benchmark figures sits between two markers,

    <!-- tables.py: vit_pretrained -->
    ...generated text...
    <!-- /tables.py -->

and the text between them is what `TABLES[name]` makes of `benchmarks/results/*.jsonl`:
a provenance line (the command, the seeds, the machines, commits and torch versions of
the runs it reads) and the table. `tests/benchmarks/test_tables.py` fails when any
marked block differs from what this script generates, so a figure in the docs is one a
reader can re-derive from the repository.

    python benchmarks/tables.py            # print every table
    python benchmarks/tables.py --check    # exit 1 naming each stale block (what the test runs)
    python benchmarks/tables.py --write    # rewrite the blocks in README.md and docs/*.md

When a seed was run more than once for the same row and settings, the newest line wins.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import reference_table
import scale_table
from method_table import RunResult, clock, format_table, mean, pm, row_stats
from results_file import METHODS_RESULTS, RESULTS, read_results

LEARNING_RESULTS = RESULTS / "learning.jsonl"
# issue 33: the demo rows from a pretraining on the 2-core Xeon (commit 2815c41), kept apart
# from methods.jsonl, whose pretrained-regime lines started from an earlier pretraining
PRETRAINED_RESULTS = RESULTS / "methods_pretrained.jsonl"
PRETRAINED_CMD = (
    "python benchmarks/methods.py --regime pretrained --rows spcl spcl_official ice ice_teacher "
    f"--seeds 0 1 2 3 4 --jobs 2 --results {PRETRAINED_RESULTS.relative_to(RESULTS.parent.parent)}"
)
PRETRAINED_UDA_CMD = (
    "python benchmarks/methods.py --regime pretrained --rows uda_spcl_dsbn uda_spcl_cc_dsbn "
    f"--seeds 0 1 2 3 4 --jobs 2 --results {PRETRAINED_RESULTS.relative_to(RESULTS.parent.parent)}"
)

# issue 33's search for a regime in which SpCL learns from the pretrained weights
_PRETRAINED_AT = PRETRAINED_RESULTS.relative_to(RESULTS.parent.parent)
SPCL_REGIME_CMD = (
    "python benchmarks/methods.py --regime pretrained --rows spcl_every_epoch spcl_extracted "
    f"--seeds 0 1 --jobs 2 --results {_PRETRAINED_AT}; python benchmarks/methods.py --regime "
    f"pretrained --rows spcl_16_epochs --seeds 0 --results {_PRETRAINED_AT}"
)

ROOT = Path(__file__).resolve().parents[1]
DOCS = (ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")))
BLOCK = re.compile(r"(<!-- tables\.py: ([\w-]+) -->\n)(.*?)(<!-- /tables\.py -->)", re.DOTALL)


@dataclass(frozen=True)
class TableSpec:
    """Which lines a table reads, and how the docs should say they were made."""

    command: str
    rows: tuple[str, ...]  # row names, in table order
    regime: str = "random"
    role: str = "row"  # "row": a method table paired against `baseline`; "pretraining",
    # "learning", "scale" and "reference" (the official SpCL runs, reference_table.py)
    baseline: str | None = None
    seeds: tuple[int, ...] | None = None  # None: every seed found
    extra: tuple[str, ...] = ()  # the `--set` overrides of those runs
    results: Path = METHODS_RESULTS


TABLES: dict[str, TableSpec] = {
    "learning": TableSpec(
        "python benchmarks/learning.py", (), role="learning", results=LEARNING_RESULTS
    ),
    "vit_pretraining": TableSpec(
        "python benchmarks/methods.py --regime pretrained --rows cc_vit_small --seeds 1 2 3",
        ("pretrain", "pretrain_vit_small"),
        regime="pretrained",
        role="pretraining",
    ),
    # docs/scale.md: made by scale_table.py from scale.jsonl (benchmarks/knn_choice.py)
    **{
        name: TableSpec(
            "python benchmarks/knn_choice.py", (), role="scale", results=scale_table.SCALE_RESULTS
        )
        for name in scale_table.SCALE_TABLES
    },
    "pretrained_demo": TableSpec(
        PRETRAINED_CMD,
        ("cc", "spcl", "spcl_official", "ice", "ice_teacher"),
        regime="pretrained",
        baseline="cc",
        results=PRETRAINED_RESULTS,
    ),  # fmt: skip
    "pretrained_uda": TableSpec(
        PRETRAINED_UDA_CMD,
        ("uda_cc_target_only", "uda_spcl_dsbn", "uda_spcl_cc_dsbn"),
        regime="pretrained",
        baseline="uda_cc_target_only",
        results=PRETRAINED_RESULTS,
    ),
    "pretrained_spcl_regime": TableSpec(
        SPCL_REGIME_CMD,
        ("cc", "spcl", "spcl_every_epoch", "spcl_extracted", "spcl_16_epochs"),
        regime="pretrained",
        baseline="cc",
        seeds=(0, 1),
        results=PRETRAINED_RESULTS,
    ),
    # the official SpCL script from the same weights on the same set (reference_table.py)
    "official_spcl_pretrained": TableSpec(
        reference_table.COMMAND, (), role="reference", results=reference_table.OFFICIAL_SPCL
    ),
    "vit_pretrained": TableSpec(
        "python benchmarks/methods.py --regime pretrained --rows cc_vit_small --seeds 1 2 3",
        ("cc", "cc_vit_small"),
        regime="pretrained",
        baseline="cc",
        seeds=(1, 2, 3),
    ),
}


def extras(record: dict[str, Any]) -> tuple[str, ...]:
    """The user's `--set` part of a line's overrides (the row's own and methods.py's out)."""
    from method_rows import PRETRAIN, PRETRAINS, ROWS

    rows = {r.name: r for r in [*ROWS, PRETRAIN, *PRETRAINS.values()]}
    own = set(rows[record["row"]].overrides) if record["row"] in rows else set()
    # methods.py's own: the start weights, and data.source for the rows adapting A -> B
    ours = ("model.pretrained=", "data.source=")
    return tuple(o for o in record["overrides"] if o not in own and not o.startswith(ours))


def select(spec: TableSpec) -> dict[str, dict[int, dict[str, Any]]]:
    """row -> seed -> its newest line, among the lines the spec reads."""
    chosen: dict[str, dict[int, dict[str, Any]]] = {r: {} for r in spec.rows}
    for rec in sorted(read_results(spec.results), key=lambda r: r["finished"]):
        if rec["row"] not in chosen or rec["regime"] != spec.regime or rec["role"] != spec.role:
            continue
        if extras(rec) != spec.extra or (spec.seeds and rec["seed"] not in spec.seeds):
            continue
        chosen[rec["row"]][rec["seed"]] = rec
    return chosen


def as_run(rec: dict[str, Any]) -> RunResult:
    return RunResult(
        rec["seed"], Path(rec["run"]), rec["mAP"], rec["rank1"], rec["wall_s"], rec["error"],
        rec["start_mAP"],
    )  # fmt: skip


def provenance(spec: TableSpec, lines: list[dict[str, Any]]) -> str:
    """The line above a table: how to re-make it, and what the runs ran on."""
    seeds = sorted({r["seed"] for r in lines})

    def joined(key: str) -> str:
        return "; ".join(sorted({str(r[key]) for r in lines})) or "–"

    return (
        f"Generated by `python benchmarks/tables.py` from `{spec.results.relative_to(ROOT)}` "
        f"({len(lines)} runs of `{spec.command}`). Seeds: {' '.join(map(str, seeds)) or '–'}. "
        f"Machine: {joined('machine')}. Commit: {joined('commit')}. torch {joined('torch')}."
    )


def pretraining_table(chosen: dict[str, dict[int, dict[str, Any]]]) -> str:
    head = (
        "| pretraining (true identities, set P) | seeds | mAP untrained | mAP | R1 | wall / run |"
    )
    lines = [head, "|---|---|---|---|---|---|"]
    for runs in chosen.values():
        if not runs:
            continue
        recs = list(runs.values())
        stats = row_stats(recs[0]["label"], [as_run(r) for r in recs], None)
        lines.append(
            f"| {stats.label} | {stats.n} | {pm(stats.start_mean, math.nan)} "
            f"| {pm(stats.map_mean, stats.map_std)} | {pm(stats.r1_mean, stats.r1_std)} "
            f"| {clock(mean([r['wall_s'] for r in recs if r['wall_s'] is not None]))} |"
        )
    return "\n".join(lines)


def method_table(spec: TableSpec, chosen: dict[str, dict[int, dict[str, Any]]]) -> str:
    base = [as_run(r) for r in chosen[spec.baseline].values()] if spec.baseline else []
    base_label = next((r["label"] for r in chosen.get(spec.baseline or "", {}).values()), "–")
    stats = [
        row_stats(
            next(iter(runs.values()))["label"],
            [as_run(r) for r in runs.values()],
            None if name == spec.baseline else base,
        )
        for name, runs in chosen.items()
        if runs
    ]
    return format_table(stats, base_label, markdown=True)


def learning_table(spec: TableSpec) -> str:
    """Each method's trained / null distributions, gaps and margin (benchmarks/learning.py)."""
    from learning import FIELDS, report
    from learning_recipes import RECIPES, newest_lines

    lines = read_results(spec.results, FIELDS)
    used = newest_lines(lines)  # the runs the table shows
    return f"{provenance(spec, used)}\n\n{report(lines, sorted(RECIPES))}\n"


def generate(name: str) -> str:
    """The text of table `name` (provenance line, blank line, Markdown table)."""
    spec = TABLES[name]
    if spec.role == "scale":
        return scale_table.generate(name)
    if spec.role == "reference":
        return reference_table.generate(spec.results)
    if spec.role == "learning":
        return learning_table(spec)
    chosen = select(spec)
    lines = [rec for runs in chosen.values() for rec in runs.values()]
    if not lines:
        return provenance(spec, lines) + "\n\nNo runs recorded yet.\n"
    table = pretraining_table(chosen) if spec.role == "pretraining" else method_table(spec, chosen)
    failed = [f"- {r['label']}, seed {r['seed']}: {r['error']}" for r in lines if r["error"]]
    notes = "\n\nFailed runs (counted in `seeds`, not in the statistics):\n" + "\n".join(failed)
    return f"{provenance(spec, lines)}\n\n{table}{notes if failed else ''}\n"


def stale_blocks(files: tuple[Path, ...] = DOCS) -> list[str]:
    """`file: table` for every marked block whose text is not what generate() gives."""
    stale = []
    for path in files:
        for match in BLOCK.finditer(path.read_text()):
            name = match.group(2)
            if name not in TABLES:
                stale.append(f"{path.relative_to(ROOT)}: unknown table {name!r} ({sorted(TABLES)})")
            elif match.group(3) != generate(name):
                stale.append(f"{path.relative_to(ROOT)}: table {name!r} differs from its results")
    return stale


def rewrite(files: tuple[Path, ...] = DOCS) -> list[Path]:
    """Regenerate every marked block; an unknown table name stops before anything is written."""
    unknown = [f"{p.relative_to(ROOT)}: {m.group(2)!r}" for p in files
               for m in BLOCK.finditer(p.read_text()) if m.group(2) not in TABLES]  # fmt: skip
    if unknown:
        raise KeyError(f"no such table in TABLES ({sorted(TABLES)}): {', '.join(unknown)}")
    changed = []
    for path in files:
        text = path.read_text()
        new = BLOCK.sub(lambda m: m.group(1) + generate(m.group(2)) + m.group(4), text)
        if new != text:
            path.write_text(new)
            changed.append(path)
    return changed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if a docs block is stale")
    ap.add_argument("--write", action="store_true", help="rewrite the docs blocks")
    ap.add_argument("names", nargs="*", help=f"tables to print (default all: {sorted(TABLES)})")
    args = ap.parse_args(argv)
    if args.check:
        stale = stale_blocks()
        print("\n".join(stale) or "every generated block is current", file=sys.stderr)
        return 1 if stale else 0
    if args.write:
        for path in rewrite():
            print(f"rewrote {path.relative_to(ROOT)}", file=sys.stderr)
        return 0
    for name in args.names or TABLES:
        print(f"<!-- tables.py: {name} -->\n{generate(name)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
