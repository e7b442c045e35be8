"""`unreid presets` and `unreid list <kind>`: the names a config may use.

Presets are files and datasets a light registry, so those answer at once. The
other registries fill as their modules (backbones, methods, ...) are imported,
and those modules import torch: listing them takes the seconds torch takes to
load, and the help says so rather than keeping a second list that could drift.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable

from unreid.presets import list_presets


def _lister(module: str, name: str) -> Callable[[], list[str]]:
    return lambda: getattr(importlib.import_module(module), name)()


LISTERS = {
    "backbones": _lister("unreid.models", "describe_backbones"),
    "clusterers": _lister("unreid.pseudo_labels.clusterers", "list_clusterers"),
    "datasets": _lister("unreid.data.datasets", "list_datasets"),
    "memories": _lister("unreid.memory", "list_memories"),
    "methods": _lister("unreid.methods", "list_methods"),
    "poolings": _lister("unreid.models", "list_poolings"),
    "presets": list_presets,
}
LIGHT = {"datasets", "presets"}  # listed without importing torch (tests/test_cli.py checks)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("presets", help="list the config presets")
    p.set_defaults(func=lambda a: print("\n".join(list_presets())) or 0)
    p = sub.add_parser("list", help="list the registered names of one kind")
    p.add_argument(
        "kind",
        choices=sorted(LISTERS),
        help=f"what to list; {', '.join(sorted(set(LISTERS) - LIGHT))} load torch first "
        "(a few seconds)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    print("\n".join(LISTERS[args.kind]()))
    return 0
