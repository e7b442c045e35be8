"""`unreid` command line: one module per command, each adding its own sub-parser.

A command module exposes `add_parser(sub)`; `COMMANDS` lists them in the order
`unreid --help` shows them. Errors from bad input already name the key or the
file, so they are printed as one line (exit 2) unless `-v` asks for the traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys

from unreid.cli import demo, evaluate, listing, synth, train
from unreid.errors import ConfigError

COMMANDS = [demo, train, evaluate, synth, listing]


def _setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unreid", description=__doc__.split("\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    try:
        return args.func(args)
    except (ConfigError, FileNotFoundError, ValueError, RuntimeError) as err:
        if args.verbose:
            raise
        print(f"unreid: error: {err}", file=sys.stderr)
        return 2
