"""`unreid` command line: one module per command, each adding its own sub-parser.

A command module exposes `add_parser(sub)`; `COMMANDS` lists them in the order
`unreid --help` shows them. Errors from bad input already name the key or the
file, so they are printed as one line (exit 2) unless `-v` asks for the traceback.

What a user reads first (`DESCRIPTION`, `EXAMPLES`) is kept apart from this
docstring. Command modules import torch and the config (which imports every
method) inside their `run`, never at the top: `--help`, `presets` and most of
`list` then answer in a fraction of a second instead of five.
"""

from __future__ import annotations

import argparse
import logging
import os
import select
import sys

from unreid.cli import demo, evaluate, export, extract, listing, report, search, synth, train
from unreid.cli.common import OWN_FOOTAGE_NOTES, OWN_FOOTAGE_TRAIN
from unreid.errors import ConfigError

COMMANDS = [demo, train, evaluate, report, extract, search, export, synth, listing]

DESCRIPTION = "Learn person re-identification from unlabeled camera crops; search and export it."
EXAMPLES = f"""\
examples:
  see it learn on synthetic data (CPU, about 10 min, no downloads):
    unreid demo

  train on your own folder of unlabeled person crops:
    {OWN_FOOTAGE_TRAIN}
{OWN_FOOTAGE_NOTES}

  search the crops with the trained model, and export it:
    unreid search --checkpoint runs/mycams/last.pth --gallery crops --query crops/cam1/0001.jpg --html hits.html
    unreid export --checkpoint runs/mycams/last.pth --format onnx    # or safetensors

`unreid COMMAND --help` for a command's options; the walkthrough from crops to a
shipped model: docs/walkthrough.md in the source repository."""


def _setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    # faiss reports every CPU-feature library it could not load at INFO: noise unless -v
    logging.getLogger("faiss").setLevel(logging.DEBUG if verbose else logging.WARNING)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="unreid",
        description=DESCRIPTION,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # Overrides may stand on both sides of an option (`train --config X a=1 --out D b=2`):
    # argparse leaves the ones after an option over, and they join the others.
    args, extra = parser.parse_known_args(argv)
    stray = [x for x in extra if x.startswith("-") or "=" not in x]
    if stray or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(stray or extra)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    _setup_logging(args.verbose)
    try:
        code = args.func(args)
        sys.stdout.flush()  # what is still buffered: a reader that left shows here, not at exit
        return code
    except BrokenPipeError as err:
        if _stdout_gone():  # `unreid presets | head -1`: the reader has all it wanted
            return _quiet_sigpipe_exit()
        return _failed(args, err)
    except (ConfigError, OSError, ValueError, RuntimeError) as err:
        return _failed(args, err)
    except KeyboardInterrupt:  # `train` says what it kept; elsewhere there is nothing to keep
        if args.verbose:
            raise
        print("\nunreid: interrupted", file=sys.stderr)
        return 130


def _failed(args: argparse.Namespace, err: Exception) -> int:
    if args.verbose:
        raise err
    print(f"unreid: error: {err}", file=sys.stderr)
    return 2


def _stdout_gone() -> bool:
    """Whether the BrokenPipeError is stdout's: its pipe has no reader left (POLLERR).

    Another broken pipe (a worker's, a socket's) is a real error and is reported as one.
    """
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll() here, or no real stdout
        return False


def _quiet_sigpipe_exit() -> int:
    """Stop as a command killed by SIGPIPE does: no message, status 141 (128 + SIGPIPE).

    Python's "Note on SIGPIPE" (signal module docs): point stdout at devnull, so the
    flush at interpreter exit does not raise the same error again.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 141
