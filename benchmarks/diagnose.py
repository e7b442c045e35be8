"""Per-epoch diagnosis of the runs `benchmarks/methods.py` left: what happened before the final mAP.

A method's final mAP says who won; this says where a loser lost. For each row
folder (`<out>/<row>-<hash>/`, every seed in it) it prints, per epoch, the
mean over seeds of: the cluster count, the largest cluster's share of the
training images (a giant cluster is how random-init runs collapse), the
pseudo-label ARI against the true identities, and every `diagnostics` number
the method logged (memory drift, GCL attention agreement, SAA dispersion;
`src/unreid/methods/diagnostics.py`). A summary table then gives, per row,
the epochs spent in a collapse (largest cluster above `--giant` of the set),
the ARI averaged over epochs, the last epoch's ARI and the test mAP.

    python benchmarks/diagnose.py --out /path/to/methods-out              # every row
    python benchmarks/diagnose.py --out OUT --rows cc gcl_scl_camera_frame --markdown

The regime of a folder (random init, or `model.pretrained=...`) is read from
its config.yaml and printed with its name. Seeds whose run has no last-epoch
test record (still running, or stopped) are named and left out. Only files are
read; nothing trains.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

FIXED = ("clusters", "largest", "ari")


@dataclass
class Folder:
    """One row's folder: per seed, its epoch records (epoch >= 1) and its final test mAP."""

    name: str
    regime: str
    epochs: dict[int, list[dict]] = field(default_factory=dict)  # seed -> records
    final_map: dict[int, float] = field(default_factory=dict)
    unfinished: list[int] = field(default_factory=list)  # seeds without a last-epoch test


def epoch_numbers(record: dict) -> dict[str, float]:
    """The per-epoch numbers of one log.jsonl record (NaN where the record lacks one)."""
    sizes = record.get("cluster_sizes") or {}
    samples = sizes.get("samples")
    largest = sizes.get("size_max")
    out = {
        "clusters": float(record.get("clusters", math.nan)),
        "largest": largest / samples if largest is not None and samples else math.nan,
        "ari": _num((record.get("pseudo_label_quality") or {}).get("ari")),
    }
    out.update({k: _num(v) for k, v in (record.get("diagnostics") or {}).items()})
    return out


def _num(value) -> float:
    return math.nan if value is None else float(value)


def read_folder(path: Path, seeds: set[int] | None = None) -> Folder:
    """Every finished seed's log.jsonl under ``path`` (``seed<N>/``); unfinished ones listed.
    ``seeds`` (default all): only those, so rows run over different seeds compare paired."""
    logs = sorted(path.glob("seed*/log.jsonl"))
    if not logs:
        raise FileNotFoundError(f"{path}: no seed*/log.jsonl (not a benchmarks/methods.py row)")
    folder = Folder(path.name, regime_of(logs[0].parent / "config.yaml"))
    for log in logs:
        seed = int(log.parent.name.removeprefix("seed"))
        if seeds is not None and seed not in seeds:
            continue
        records = []
        for n, line in enumerate(log.read_text().splitlines(), 1):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{log}:{n}: not a JSON record ({err.msg})") from err
        config = log.parent / "config.yaml"
        epochs = (yaml.safe_load(config.read_text()) or {}).get("train", {}).get("epochs")
        last = [r for r in records if r.get("epoch") == epochs and "test" in r]
        if epochs is None or not last:  # still running, or stopped: its epochs would skew
            folder.unfinished.append(seed)
            continue
        folder.epochs[seed] = [r for r in records if r.get("epoch", 0) >= 1 and "clusters" in r]
        folder.final_map[seed] = float(last[-1]["test"]["mAP"])
    return folder


def regime_of(config: Path) -> str:
    if not config.exists():
        return "unknown (no config.yaml)"
    pretrained = (yaml.safe_load(config.read_text()).get("model") or {}).get("pretrained")
    return "random init" if pretrained in (None, "", False, "none") else f"from {pretrained}"


def nanmean(values: list[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else math.nan


def per_epoch(folder: Folder) -> tuple[list[str], list[tuple[int, int, dict[str, float]]]]:
    """Column keys and, per epoch, (epoch, seeds that reached it, mean of each key)."""
    by_epoch: dict[int, list[dict[str, float]]] = {}
    for records in folder.epochs.values():
        for r in records:
            by_epoch.setdefault(int(r["epoch"]), []).append(epoch_numbers(r))
    extra = sorted({k for rows in by_epoch.values() for row in rows for k in row} - set(FIXED))
    keys = [*FIXED, *extra]
    table = []
    for epoch in sorted(by_epoch):
        rows = by_epoch[epoch]
        table.append(
            (epoch, len(rows), {k: nanmean([r.get(k, math.nan) for r in rows]) for k in keys})
        )
    return keys, table


def summary(folder: Folder, giant: float) -> dict[str, float]:
    """Means over seeds: epochs with a giant cluster, ARI over epochs, last ARI, final mAP."""
    collapsed, mean_ari, last_ari = [], [], []
    for records in folder.epochs.values():
        numbers = [epoch_numbers(r) for r in records]
        if not numbers:
            continue
        collapsed.append(float(sum(n["largest"] > giant for n in numbers)))
        mean_ari.append(nanmean([n["ari"] for n in numbers]))
        last_ari.append(numbers[-1]["ari"])
    return {
        "seeds": float(len(folder.epochs)),
        "collapsed_epochs": nanmean(collapsed),
        "mean_ari": nanmean(mean_ari),
        "last_ari": nanmean(last_ari),
        "mAP": nanmean(list(folder.final_map.values())),
    }


def fmt(value: float, key: str = "") -> str:
    if math.isnan(value):
        return "–"
    if key in ("clusters", "seeds", "collapsed_epochs"):
        return f"{value:.1f}".removesuffix(".0")
    if key == "mAP":
        return f"{100 * value:.1f}"
    return f"{value:.3f}"


def render(header: list[str], rows: list[list[str]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(header)]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in [header, *rows]
    )


def report(folders: list[Folder], giant: float, markdown: bool) -> str:
    out = []
    for f in folders:
        keys, table = per_epoch(f)
        skipped = f"; unfinished, left out: {f.unfinished}" if f.unfinished else ""
        out.append(f"\n{f.name} ({f.regime}; seeds {sorted(f.epochs)}{skipped})")
        rows = [[str(e), str(n), *(fmt(v[k], k) for k in keys)] for e, n, v in table]
        out.append(render(["epoch", "seeds", *keys], rows, markdown))
    head = ["row", "regime", "seeds", f"epochs largest > {giant:.0%}", "ARI, mean over epochs"]
    head += ["last ARI", "test mAP"]
    rows = []
    for f in folders:
        s = summary(f, giant)
        keys = ("seeds", "collapsed_epochs", "mean_ari", "last_ari", "mAP")
        rows.append([f.name, f.regime, *(fmt(s[k], k) for k in keys)])
    out.append("\nsummary (means over seeds)")
    out.append(render(head, rows, markdown))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="benchmarks/methods.py's --out folder")
    ap.add_argument("--rows", nargs="*", default=None, help="row names (default: every row)")
    ap.add_argument("--giant", type=float, default=0.25, help="collapse: largest cluster share")
    ap.add_argument("--seeds", nargs="*", type=int, default=None, help="only these (default all)")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if not out.is_dir():
        ap.error(f"--out {out}: no such folder")
    paths = sorted(p for p in out.iterdir() if p.is_dir() and any(p.glob("seed*/log.jsonl")))
    if args.rows is not None:
        wanted = set(args.rows)
        paths = [p for p in paths if p.name.rsplit("-", 1)[0] in wanted]
        found = {p.name.rsplit("-", 1)[0] for p in paths}
        if wanted - found:
            ap.error(f"no run folder under {out} for rows {sorted(wanted - found)}")
    if not paths:
        ap.error(f"no run folders (<row>-<hash>/seed*/log.jsonl) under {out}")
    seeds = None if args.seeds is None else set(args.seeds)
    print(report([read_folder(p, seeds) for p in paths], args.giant, args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
