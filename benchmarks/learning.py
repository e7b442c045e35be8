"""Measure every method's learning run against its null control over seeds.

For each method (default: every registered one) and seed (default SEEDS of
learning_recipes.py), trains the method's tiny recipe twice, at its preset's learning
rate and at NULL_LR, on the test suite's tiny synthetic set, and appends one line per
run to `benchmarks/results/learning.jsonl` (method, recipe key, control, seed, test
mAP / R1, wall time, commit, machine, torch). Then prints, per method, the trained and
null distributions, the gaps, the margin they set and whether every seed clears it,
which is what `tests/methods/test_learning.py` asserts on one seed.

    python benchmarks/learning.py                         # every method, seeds 0-4
    python benchmarks/learning.py --methods hhcl --seeds 0 1 2 3 4 5
    python benchmarks/learning.py --report                # the table from the file alone

Runs already in the file for the current recipe are not run again (`--again` reruns).
A run is in-process (`unreid.engine.train`), one after another, in a temporary folder.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from learning_recipes import NULL_LR, RECIPES, SEEDS, TINY_SET, TINY_SOURCE_SET, measured
from results_file import RESULTS, append_result, provenance, read_results

LEARNING_RESULTS = RESULTS / "learning.jsonl"
FIELDS = (
    "method", "recipe", "preset", "overrides", "control", "lr", "seed", "mAP", "rank1",
    "wall_s", "commit", "machine", "torch", "finished", "run", "start_mAP",
)  # fmt: skip


def write_sets(folder: Path) -> tuple[Path, Path]:
    from unreid.data.synthetic import SynthConfig
    from unreid.data.synthetic_parallel import generate_synthetic

    target, source = folder / "tiny", folder / "tiny_source"
    generate_synthetic(target, SynthConfig(**TINY_SET))
    generate_synthetic(source, SynthConfig(**TINY_SOURCE_SET))
    return target, source


def run_config(method: str, seed: int, control: str, sets: tuple[Path, Path], out: Path, name: str):
    """The config of one run of `method`'s recipe (the suite's tests train the same)."""
    from unreid.config import load_config

    recipe = RECIPES[method]
    data = [f"data.root={sets[0]}"]
    if recipe.source:
        data += ["data.source=synthetic", f"data.source_root={sets[1]}"]
    overrides = recipe.config_overrides(seed, NULL_LR if control == "null" else None)
    return load_config(recipe.preset, [*overrides, *data, f"out_dir={out}", f"name={name}"])


def run_once(
    method: str, seed: int, control: str, sets: tuple[Path, Path], out: Path, meta: dict
) -> dict:
    """Train one run in-process; its results line (`meta`: provenance taken at the start,
    since the process keeps the code it imported then, whatever the checkout does later)."""
    from unreid.engine import train

    recipe = RECIPES[method]
    cfg = run_config(method, seed, control, sets, out, f"{control}{seed}")
    started = time.time()
    summary = train(cfg, progress=False, overwrite=True)
    test = summary["final_test"]
    return {
        "method": method, "recipe": recipe.key(), "preset": recipe.preset,
        "overrides": recipe.config_overrides(seed, NULL_LR if control == "null" else None),
        "control": control, "lr": cfg.train.lr, "seed": seed,
        "mAP": test["mAP"], "rank1": test["rank1"], "wall_s": round(time.time() - started, 1),
        **meta, "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "run": f"{method}-{recipe.key()}", "start_mAP": None,
    }  # fmt: skip


def report(lines: list[dict], methods: list[str]) -> str:
    head = (
        "| method | seeds | trained mAP | null mAP | gap per seed | margin | every seed clears it |"
    )
    rows = [head, "|---|---|---|---|---|---|---|"]
    for method in methods:
        m = measured(lines, method)
        if not m.gaps:
            rows.append(f"| {method} | 0 | | | | | not measured |")
            continue
        t, n = list(m.trained.values()), list(m.null.values())
        gaps = ", ".join(f"{100 * g:+.1f}" for g in m.gaps.values())
        rows.append(
            f"| {method} | {len(m.gaps)} | {100 * min(t):.1f}–{100 * max(t):.1f} "
            f"| {100 * min(n):.1f}–{100 * max(n):.1f} | {gaps} | {100 * m.margin:.1f} "
            f"| {'yes' if m.holds else 'NO'} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--methods", nargs="+", default=sorted(RECIPES), choices=sorted(RECIPES))
    ap.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    ap.add_argument("--results", default=str(LEARNING_RESULTS))
    ap.add_argument("--again", action="store_true", help="rerun runs already in the file")
    ap.add_argument("--report", action="store_true", help="print the table only")
    args = ap.parse_args(argv)
    path = Path(args.results)
    if not args.report:
        with tempfile.TemporaryDirectory(prefix="unreid-learning-") as tmp:
            sets, meta = write_sets(Path(tmp)), provenance()
            for method in args.methods:
                for seed in args.seeds:
                    for control in ("trained", "null"):
                        have = measured(read_results(path, FIELDS), method)
                        done = seed in (have.null if control == "null" else have.trained)
                        if done and not args.again:
                            continue
                        line = run_once(method, seed, control, sets, Path(tmp) / "runs", meta)
                        append_result(path, line, FIELDS)
                        print(f"{method} seed {seed} {control}: mAP {100 * line['mAP']:.1f} "
                              f"({line['wall_s']:.0f} s)", file=sys.stderr, flush=True)  # fmt: skip
    print(report(read_results(path, FIELDS), args.methods))
    return 0


if __name__ == "__main__":
    sys.exit(main())
