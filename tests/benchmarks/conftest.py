"""Every benchmark test records into its own results file, never the committed ones."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def results_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The file `benchmarks/methods.py` appends to in this test (subprocesses inherit it)."""
    path = tmp_path / "recorded" / "methods.jsonl"
    monkeypatch.setenv("UNREID_BENCH_RESULTS", str(path))
    return path
