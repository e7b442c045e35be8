"""First contact: `unreid --help` says what unreid does and answers without loading torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from unreid.cli import main
from unreid.cli.common import OWN_FOOTAGE_TRAIN

WALKTHROUGH = Path(__file__).parents[2] / "docs" / "walkthrough.md"

# `python -m unreid ARGS` in a fresh interpreter, then whether torch got imported
_WRAPPER = """\
import runpy, sys
sys.argv = ["unreid", *sys.argv[1:]]
try:
    runpy.run_module("unreid", run_name="__main__")
except SystemExit as exit:
    code = exit.code
print("exit", code, "torch loaded:", "torch" in sys.modules)
"""


def _run_light(*args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", _WRAPPER, *args], capture_output=True, text=True, check=True
    )
    return out.stdout


@pytest.mark.parametrize(
    "args", [("--help",), ("train", "--help"), ("presets",), ("list", "datasets")]
)
def test_help_presets_and_light_lists_do_not_import_torch(args):
    out = _run_light(*args)
    assert out.splitlines()[-1] == "exit 0 torch loaded: False"


def test_help_shows_the_demo_own_footage_and_search_export_commands():
    out = _run_light("--help")
    assert "unlabeled camera crops" in out.splitlines()[4]  # the one-line description
    assert "`unreid` command line" not in out  # the developers' docstring stays out
    assert "unreid demo\n" in out
    assert OWN_FOOTAGE_TRAIN in out
    assert "unreid search --checkpoint runs/mycams/last.pth --gallery crops" in out
    assert "unreid export --checkpoint runs/mycams/last.pth --format onnx" in out


def test_train_help_shows_the_own_footage_command(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert OWN_FOOTAGE_TRAIN in capsys.readouterr().out


def test_the_help_recommends_what_the_walkthrough_runs():
    # tests/test_walkthrough.py runs the walkthrough's commands, so this one is known to work
    assert f"\n{OWN_FOOTAGE_TRAIN}\n" in WALKTHROUGH.read_text()
