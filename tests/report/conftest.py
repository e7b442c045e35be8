"""A demo-like run folder, trained once per test session at the tiny budget."""

from __future__ import annotations

from pathlib import Path

import pytest

from tiny_runs import TINY_RUN
from unreid.config import load_config
from unreid.engine import train

# The tests/engine/test_loop.py budget: 64x32 images, ResNet-18 from random init.


@pytest.fixture(scope="session")
def demo_run(tiny_synthetic: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Like `unreid demo`: untrained evaluation, then 2 epochs evaluated on test and val."""
    out = tmp_path_factory.mktemp("report_runs")
    cfg = load_config(
        "demo",
        [
            *TINY_RUN,
            f"data.root={tiny_synthetic}",
            f"out_dir={out}",
            "name=demo_like",
            "train.epochs=2",
            "train.iters=2",
            "eval.every=1",
            "eval.at_start=true",
        ],
    )
    summary = train(cfg, progress=False)
    return Path(summary["run_dir"])


@pytest.fixture(scope="session")
def demo_report(demo_run: Path) -> tuple[Path, float]:
    """The demo-like run's report, written once: (path, seconds it took to build)."""
    import time

    from unreid.report import write_report

    started = time.perf_counter()
    path = write_report(demo_run)
    return path, time.perf_counter() - started
