"""Each method's tiny learning runs, trained once per test session and read by several tests.

A method's recipe (`benchmarks/learning_recipes.py`) is trained twice, at its learning
rate and at lr 1e-9 (the null control); the trained run's folder is also copied after
its next-to-last epoch. `test_learning` compares the two test mAPs; `test_exact_resume`
resumes the copy and requires the last epoch to end in the trained run's checkpoint. So a
method costs two runs and one epoch for both claims, where separate tests cost four runs.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from run_copies import copied_after
from unreid.engine import train

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))  # the recipes live with the script that measures them
import learning  # noqa: E402
import learning_recipes  # noqa: E402

SEED = learning_recipes.SEEDS[0]  # the seed the tests run; the margins come from all of them


def per_method(methods) -> list:
    """`methods` as parameters whose tests share one pytest-xdist worker per method, so the
    runs a method's tests read are trained once (`--dist loadgroup`, pyproject's addopts)."""
    return [pytest.param(m, marks=pytest.mark.xdist_group(f"learning-{m}")) for m in methods]


@dataclass(frozen=True)
class Finished:
    folder: Path  # the run folder (last.pth, log.jsonl, ...)
    mAP: float  # test mAP after the last epoch


class LearningRuns:
    """Trains a (method, control) run on first request and keeps it for the session."""

    def __init__(self, target: Path, source: Path, out: Path) -> None:
        self.sets = (target, source)
        self.out = out
        self.done: dict[tuple[str, str], Finished] = {}

    def split_epoch(self, method: str) -> int:
        """The epoch after which the trained run's folder is copied (resumed from there)."""
        return learning_recipes.RECIPES[method].epochs - 1

    def copy_of(self, method: str) -> Path:
        return self.out / f"{method}-trained-at{self.split_epoch(method)}"

    def get(self, method: str, control: str) -> Finished:
        if (method, control) not in self.done:
            self.done[method, control] = self._train(method, control)
        return self.done[method, control]

    def _train(self, method: str, control: str) -> Finished:
        cfg = learning.run_config(method, SEED, control, self.sets, self.out, f"{method}-{control}")
        copying = (
            copied_after(self.split_epoch(method), self.copy_of(method))
            if control == "trained"
            else contextlib.nullcontext()
        )
        with copying:
            summary = train(cfg, progress=False)
        return Finished(self.out / cfg.name, summary["final_test"]["mAP"])

    def resumed(self, method: str) -> Path:
        """The trained run's copy, resumed to the end; its folder."""
        self.get(method, "trained")
        copy = self.copy_of(method)
        if not (copy / "resumed").exists():
            cfg = learning.run_config(method, SEED, "trained", self.sets, self.out, copy.name)
            train(cfg, resume=copy, progress=False)
            (copy / "resumed").touch()
        return copy
