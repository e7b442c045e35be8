"""gpu_check.json as markdown: one table per stage, the figures docs/gpu.md quotes.

python benchmarks/gpu_check_table.py benchmarks/results/gpu_check/gpu_check.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _f(value, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 10**digits else f"{value:.0f}"
    return str(value)


def _table(head: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return lines + ["| " + " | ".join(_f(v) for v in row) + " |" for row in rows] + [""]


def _throughput(st: dict) -> list[str]:
    s = st.get("setting", {})
    out = [f"{s.get('train_images', '?')} training crops at {s.get('height')}x{s.get('width')}, "
           f"batch {s.get('batch_size')}, {s.get('iters')} steps ({s.get('warmup')} warm-up); "
           "peak GB: device allocation on a GPU, process RSS on a CPU.", ""]  # fmt: skip
    rows = []
    for arch, per in st.get("archs", {}).items():
        for config in ("baseline", "all on"):
            r = per.get(config)
            if r:
                rows.append([arch, config, r["train img/s"], r["step s"], r["extract img/s"],
                             r["epoch s"], r["peak GB"],
                             per.get("train_speedup") if config == "all on" else None])  # fmt: skip
            elif per.get("status") != "ok":
                rows.append([arch, config, *[None] * 5, None])
    head = ["arch", "config", "train img/s", "step s", "extract img/s", "epoch s", "peak GB",
            "train speed-up"]  # fmt: skip
    return out + _table(head, rows)


def _epochs(epochs: list[dict]) -> list[str]:
    keys = ["epoch", "seconds", "extract", "cluster", "memories", "train", "evaluate", "clusters"]
    return _table(keys, [[e.get(k) for k in keys] for e in epochs])


def _recipe(st: dict) -> list[str]:
    out = _epochs(st.get("epochs", []))
    p = st.get("projection")
    if p:
        out += [f"Projected: {p['epochs']} epochs x {p['epoch_s']} s + {p['evaluations']} "
                f"evaluations x {p['evaluate_s']} s = {p['seconds']:.0f} s "
                f"({p['hours']:.2f} h); test mAP after the measured epochs: "
                f"{_f(st.get('mAP'))} (random init).", ""]  # fmt: skip
    return out


def _torchrun(st: dict) -> list[str]:
    rows = []
    for name in ("one_process", "torchrun_2"):
        r = st.get(name, {})
        epoch = (r.get("epochs") or [{}])[-1]
        rows.append([name, r.get("status"), r.get("wall_s"), epoch.get("train"),
                     epoch.get("clusters"), epoch.get("loss"), r.get("mAP"), r.get("rank1")])  # fmt: skip
    head = ["run", "status", "wall s", "train s", "clusters", "loss", "mAP", "R1"]
    return _table(head, rows) + [f"mAP difference: {_f(st.get('mAP_difference'))}", ""]


def _pseudo_labels(st: dict) -> list[str]:
    rows, sharded = [], []
    for name, part in st.get("sets", {}).items():
        info = part.get("info", {})
        size = f"{info.get('n', '?')} x {info.get('dim', '?')}"
        for r in part.get("rows", []):
            if "world" in r:
                sharded.append([name, size, r["method"], r["world"], r["sharded_s"],
                                r["one_process_s"], r["labels_equal"], r["clusters"]])  # fmt: skip
            else:
                rows.append([name, size, r["method"], r["knn_s"], r["labels_s"],
                             r.get("rows_differing"), r.get("labels_equal"), r["clusters"]])  # fmt: skip
        if not part.get("rows"):
            rows.append([name, size, f"({part.get('status')})", *[None] * 5])
    head = ["set", "N x d", "kNN", "kNN s", "labels s", "rows differing", "labels equal",
            "clusters"]  # fmt: skip
    out = _table(head, rows)
    if sharded:
        out += _table(["set", "N x d", "kNN", "ranks", "sharded s", "one process s",
                       "labels equal", "clusters"], sharded)  # fmt: skip
    return out


SECTIONS = {"throughput": _throughput, "recipe": _recipe, "torchrun": _torchrun,
            "pseudo_labels": _pseudo_labels}  # fmt: skip


def markdown(report: dict) -> str:
    """The whole check: what ran where, each stage's status and time, then each stage's table."""
    lines = [f"# GPU check: {report.get('device')} ({'tiny, CPU' if report.get('tiny') else 'full'})",
             "", f"torch {report.get('torch')}, {report.get('cpus')} CPUs, commit "
             f"{report.get('commit')}, budget {report.get('budget_s'):.0f} s.", ""]  # fmt: skip
    stages = report.get("stages", {})
    lines += _table(["stage", "status", "seconds", "budget s", "note"],
                    [[n, s["status"], s.get("seconds"), s.get("budget_s"), s.get("note", "")]
                     for n, s in stages.items()])  # fmt: skip
    synth = stages.get("synth", {})
    if "bounding_box_train" in synth:
        lines += [f"Synthetic set: {synth['bounding_box_train']} training, {synth['query']} query, "
                  f"{synth['bounding_box_test']} gallery images; generated in "
                  f"{_f(synth.get('generate_s'))} s.", ""]  # fmt: skip
    for name, section in SECTIONS.items():
        if name in stages and stages[name]["status"] != "skipped":
            lines += [f"## {name}", "", *section(stages[name])]
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown(json.loads(Path(sys.argv[1]).read_text())))
