"""`unreid synth`: write the procedural synthetic dataset (Market-1501 layout)."""

from __future__ import annotations

import argparse
import dataclasses
import time


def _fields() -> list[dataclasses.Field]:
    from unreid.data.synthetic import SynthConfig

    return [
        f
        for f in dataclasses.fields(SynthConfig)
        if f.type in ("int", "float", "str", int, float, str)
    ]


def add_parser(sub: argparse._SubParsersAction) -> None:
    from unreid.data.synthetic import SynthConfig

    p = sub.add_parser("synth", help="write the procedural synthetic dataset (Market-1501 layout)")
    p.add_argument("--out", required=True)
    p.add_argument(
        "--workers", type=int, default=0, help="processes (default 0: one per CPU; 1: serial)"
    )
    defaults = SynthConfig()
    for f in _fields():
        typ = {"int": int, "float": float, "str": str}.get(f.type, f.type)  # type: ignore[arg-type]
        p.add_argument(
            f"--{f.name.replace('_', '-')}",
            type=typ,
            default=getattr(defaults, f.name),
            help=f"(default {getattr(defaults, f.name)})",
        )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from unreid.data.synthetic import SynthConfig
    from unreid.data.synthetic_parallel import generate_synthetic

    cfg = SynthConfig(**{f.name: getattr(args, f.name) for f in _fields()})
    started = time.time()
    counts = generate_synthetic(args.out, cfg, workers=args.workers, progress=True)
    print(f"wrote synthetic dataset to {args.out} in {time.time() - started:.1f}s: {counts}")
    return 0
