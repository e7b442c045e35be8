"""Shared fixtures: one tiny synthetic dataset per test session, written in Market layout."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from tiny_runs import ONE_STEP_RUN, TINY, TINY_B
from unreid.data.synthetic import generate_synthetic

# Two cores: keep torch from oversubscribing when pytest runs alongside data workers.
torch.set_num_threads(2)
if os.environ.get("PYTEST_XDIST_WORKER"):
    # pyproject's addopts run two pytest-xdist workers on the two cores: one torch thread
    # each, whatever a run's train.threads asks the loop for, or four threads share two.
    torch.set_num_threads(1)
    _one_thread = torch.set_num_threads
    torch.set_num_threads = lambda n: _one_thread(1)


_UNGROUPED = pytest.StashKey[set]()


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under `--dist loadgroup`, pytest-xdist marks a grouped test's id with `@group`; a
    pytest it does not support leaves the ids alone, and the groups' shared runs are then
    trained on both workers (pytest 9.2 with xdist 3.8 did): those tests fail, saying so."""
    grouping = os.environ.get("PYTEST_XDIST_WORKER") and config.getvalue("loadgroup")
    config.stash[_UNGROUPED] = {
        i.nodeid for i in items if grouping and i.get_closest_marker("xdist_group")
        and "@" not in i.nodeid
    }  # fmt: skip
    # Longest first: the modules holding end-to-end runs (`slow`) or shared ones (grouped)
    # are handed out before the quick ones, which then fill the workers' ends evenly
    # (xdist schedules in collection order); a module's tests stay together and in order.
    heavy = {
        i.module.__name__ for i in items
        if i.get_closest_marker("slow") or i.get_closest_marker("xdist_group")
    }  # fmt: skip
    items.sort(key=lambda i: i.module.__name__ not in heavy)


@pytest.fixture(autouse=True)
def _xdist_grouped(request: pytest.FixtureRequest) -> None:
    if request.node.nodeid in request.config.stash.get(_UNGROUPED, set()):
        pytest.fail(
            f"pytest-xdist's loadgroup did not group this test under pytest "
            f"{pytest.__version__}: install a pytest the dev extra allows (pyproject.toml)"
        )


@pytest.fixture(scope="session")
def tiny_synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    generate_synthetic(root, TINY)
    return root


@pytest.fixture(scope="session")
def tiny_synthetic_b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic_b")
    generate_synthetic(root, TINY_B)
    return root


@pytest.fixture(scope="session")
def learning_runs(tiny_synthetic, tiny_synthetic_b, tmp_path_factory):
    """Every method's tiny trained / null runs, trained on first use (tests/learning_runs.py)."""
    from learning_runs import LearningRuns

    return LearningRuns(tiny_synthetic, tiny_synthetic_b, tmp_path_factory.mktemp("learning"))


@pytest.fixture(scope="session")
def finished_once(tiny_synthetic, tmp_path_factory) -> Path:
    """A finished run with its report, as a user leaves it: the demo preset for ONE_STEP_RUN
    on the tiny set, named `r`, trained once per worker; tests take `finished`, a copy."""
    from unreid.config import load_config
    from unreid.engine import train
    from unreid.report import write_report

    out = tmp_path_factory.mktemp("finished")
    cfg = [*ONE_STEP_RUN, f"data.root={tiny_synthetic}", f"out_dir={out}", "name=r"]
    train(load_config("demo", cfg), progress=False)
    write_report(out / "r")
    assert {"last.pth", "log.jsonl", "report.html"} <= {p.name for p in (out / "r").iterdir()}
    return out / "r"


@pytest.fixture
def finished(finished_once, tmp_path) -> Path:
    """This test's copy of `finished_once`, at `tmp_path / "r"` (where the tests' configs
    with `out_dir=tmp_path`, `name=r` write)."""
    shutil.copytree(finished_once, tmp_path / "r")
    return tmp_path / "r"
