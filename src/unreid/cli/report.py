"""`unreid report RUN_DIR`: the run's HTML report (curves, ranked lists, contact sheets)."""

from __future__ import annotations

import argparse
import time


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write RUN_DIR/report.html: curves, rankings, clusters")
    p.add_argument("run_dir", help="a run folder (holds config.yaml, log.jsonl, checkpoints)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from unreid.report import write_report

    started = time.perf_counter()
    path = write_report(args.run_dir, progress=not args.no_progress)
    size = path.stat().st_size
    print(f"wrote {path} ({size / 1024:.0f} KiB, {time.perf_counter() - started:.1f} s)")
    return 0
