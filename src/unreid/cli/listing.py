"""`unreid presets` and `unreid list <kind>`: the names a config may use."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable

from unreid.config import list_presets


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


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("presets", help="list the config presets")
    p.set_defaults(func=lambda a: print("\n".join(list_presets())) or 0)
    p = sub.add_parser("list", help="list the registered names of one kind")
    p.add_argument("kind", choices=sorted(LISTERS))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    print("\n".join(LISTERS[args.kind]()))
    return 0
