"""`unreid train`: a preset or YAML file, dotted overrides, a run folder."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from unreid.config import load_config


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a method from a preset or YAML file")
    p.add_argument("--config", required=True, help="preset name or YAML path")
    p.add_argument("--resume", help="checkpoint to resume from (last.pth)")
    p.add_argument("--out", help="run folder (default <out_dir>/<name> from the config)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--source", help="labelled source dataset for domain adaptation (data.source)")
    p.add_argument("--target", help="unlabelled target dataset (data.dataset)")
    p.add_argument("overrides", nargs="*", help="config overrides key.sub=value")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from unreid.engine import train

    overrides = list(args.overrides)
    # --source/--target: sugar for the domain-adaptation keys, applied before the
    # explicit overrides so those still win
    if args.source:
        overrides.insert(0, f"data.source={args.source}")
    if args.target:
        overrides.insert(0, f"data.dataset={args.target}")
    cfg = load_config(args.config, overrides)
    if args.out:
        cfg.out_dir = str(Path(args.out).parent)
        cfg.name = Path(args.out).name
    summary = train(cfg, resume=args.resume, progress=not args.no_progress)
    print(json.dumps(summary, indent=2))
    return 0
