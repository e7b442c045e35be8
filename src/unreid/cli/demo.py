"""`unreid demo`: synthetic data, Cluster Contrast on CPU, before/after mAP in a few minutes."""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from unreid.cli.common import cache_dir, histogram_baseline
from unreid.report import write_report

log = logging.getLogger("unreid")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="synthetic data + Cluster Contrast on CPU, before/after mAP")
    p.add_argument("--out", default="runs/demo", help="run folder (default runs/demo)")
    p.add_argument("--data", help="synthetic data folder (default: a cache folder)")
    p.add_argument("--ids", type=int, default=200)
    p.add_argument("--seed", type=int, default=0, help="synthetic data seed (training: train.seed)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier demo run in --out")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("overrides", nargs="*", help="config overrides key.sub=value")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from unreid.config import load_config
    from unreid.data.datasets import load_dataset
    from unreid.data.synthetic import SynthConfig, generate_synthetic, is_generated
    from unreid.engine import train

    started = time.time()
    cfg = load_config("demo", args.overrides)
    synth = SynthConfig(ids=args.ids, seed=args.seed)
    data_dir = (
        Path(args.data)
        if args.data
        else cache_dir() / f"synthetic-demo-ids{args.ids}-seed{args.seed}"
    )
    if not is_generated(data_dir, synth):
        log.info("generating the synthetic dataset in %s", data_dir)
        generate_synthetic(data_dir, synth, progress=not args.no_progress)
    else:
        log.info("using the cached synthetic dataset in %s", data_dir)
    cfg.data.root = str(data_dir)
    out = Path(args.out)
    cfg.out_dir, cfg.name = str(out.parent), out.name

    hist = histogram_baseline(load_dataset("synthetic", data_dir))
    log.info("histogram baseline: mAP %.1f R1 %.1f", 100 * hist.mAP, 100 * hist.rank1)
    cfg.eval.at_start = True
    summary = train(cfg, overwrite=args.overwrite, progress=not args.no_progress)
    before = _read_epoch0(out / "log.jsonl")
    after = summary["final_test"]
    rows = [
        ("histogram baseline", hist.mAP, hist.rank1),
        ("untrained network", *before),
        ("Cluster Contrast", after["mAP"], after["rank1"]),
    ]
    print("\nunreid demo: synthetic test split (query vs gallery)")
    print(f"  {'':22s} {'mAP':>6s} {'R1':>6s}")
    for name, m, r1 in rows:
        print(f"  {name:22s} {100 * m:6.1f} {100 * r1:6.1f}")
    elapsed = time.time() - started
    result = {
        "dataset": str(data_dir),
        "run_dir": str(out),
        "seconds": round(elapsed, 1),
        "histogram": {"mAP": hist.mAP, "rank1": hist.rank1},
        "untrained": {"mAP": before[0], "rank1": before[1]},
        "trained": after,
        "config": cfg.to_dict(),
    }
    (out / "summary.json").write_text(json.dumps(result, indent=2))
    report = write_report(out, progress=not args.no_progress)
    print(f"\nreport: {report} (open it in a browser)")
    files = ", ".join(sorted(p.name for p in out.iterdir() if p.is_file()))
    print(f"\noutputs in {out}: {files} ({elapsed:.0f}s)")
    return 0


def _read_epoch0(path: Path) -> tuple[float, float]:
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        if rec.get("epoch") == 0:
            return rec["test"]["mAP"], rec["test"]["rank1"]
    raise RuntimeError(f"{path}: no epoch-0 evaluation recorded")
