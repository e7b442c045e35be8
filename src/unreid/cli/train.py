"""`unreid train`: a preset or YAML file, dotted overrides, a run folder; or `--resume RUN`."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

from unreid.cli.common import OWN_FOOTAGE_NOTES, OWN_FOOTAGE_TRAIN
from unreid.errors import ConfigError
from unreid.report import write_report


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a method from a preset or YAML file",
        description="Train a method from a preset (`unreid presets`) or a YAML file with\n"
        "dotted key=value overrides, into a run folder; or continue a run with --resume.",
        epilog=f"""examples:
  your own folder of unlabeled person crops:
    {OWN_FOOTAGE_TRAIN}
{OWN_FOOTAGE_NOTES}
  a labelled benchmark, then continuing it:
    unreid train --config cluster_contrast/market1501 data.root=/data/market1501
    unreid train --resume runs/cc_market1501 train.epochs=60""",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", help="preset name or YAML path (with --resume: optional check)")
    p.add_argument("--resume", help="run folder (or its last.pth) to continue")
    p.add_argument("--overwrite", action="store_true", help="replace the run in the run folder")
    p.add_argument("--out", help="run folder (default <out_dir>/<name> from the config)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument(
        "--no-report", action="store_true", help="skip report.html (unreid report RUN writes it)"
    )
    p.add_argument("--source", help="labelled source dataset for domain adaptation (data.source)")
    p.add_argument("--target", help="unlabelled target dataset (data.dataset)")
    p.add_argument("overrides", nargs="*", help="config overrides key.sub=value")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from unreid.config import load_config
    from unreid.engine import train

    overrides = list(args.overrides)
    # --source/--target: sugar for the domain-adaptation keys, applied before the
    # explicit overrides so those still win
    if args.source:
        overrides.insert(0, f"data.source={args.source}")
    if args.target:
        overrides.insert(0, f"data.dataset={args.target}")
    if args.resume:
        cfg = resumed_config(args, overrides)
    elif not args.config:
        raise ConfigError("train needs --config PRESET_OR_YAML (or --resume RUN_FOLDER)")
    else:
        cfg = load_config(args.config, overrides)
        if args.out:
            cfg.out_dir, cfg.name = str(Path(args.out).parent), Path(args.out).name
    try:
        summary = train(
            cfg,
            resume=args.resume,
            overwrite=args.overwrite,
            progress=not args.no_progress,
        )
    except KeyboardInterrupt:  # one line, not a traceback: what is kept and how to go on
        print(f"\nunreid: {interrupted(Path(cfg.out_dir) / cfg.name)}", file=sys.stderr)
        return 130
    if os.environ.get("RANK", "0") != "0":  # torchrun: rank 0 alone writes the run folder
        return 0
    if not args.no_report:
        summary["report"] = str(write_report(summary["run_dir"], progress=not args.no_progress))
    print(json.dumps(summary, indent=2))
    return 0


def resumed_config(args: argparse.Namespace, overrides: list[str]):
    """The run's own config; `--config` and `--out`, when given, must agree with the run."""
    from unreid.checkpoint import load_checkpoint
    from unreid.config import load_config
    from unreid.resume import refuse_changes, resume_config, resume_point

    run_dir, checkpoint = resume_point(args.resume)
    saved = load_checkpoint(checkpoint) if checkpoint is not None else None
    cfg = resume_config(run_dir, saved, overrides)
    if args.config:
        refuse_changes(cfg, load_config(args.config, overrides), f"--resume {args.resume}")
    if args.out and Path(args.out).resolve() != run_dir.resolve():
        raise ConfigError(f"--out {args.out} differs from the resumed run's folder {run_dir}")
    return cfg


def interrupted(run_dir: Path) -> str:
    """What Ctrl-C left in `run_dir`, and the command that continues it."""
    from unreid.checkpoint import peek_checkpoint

    last = run_dir / "last.pth"
    if not last.is_file():
        return (
            f"interrupted before the first checkpoint: nothing to resume in {run_dir} "
            "(the next run there starts afresh)"
        )
    try:
        epoch = peek_checkpoint(last)["state"]["epoch"]
    except Exception:  # an unreadable file: resuming will say why
        epoch = "?"
    return (
        f"interrupted: {last} keeps epoch {epoch}; resume with: "
        f"unreid train --resume {shlex.quote(str(run_dir))}"
    )
