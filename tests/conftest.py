"""Shared fixtures: one tiny synthetic dataset per test session, written in Market layout."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tiny_runs import TINY, TINY_B
from unreid.data.synthetic import generate_synthetic

# Two cores: keep torch from oversubscribing when pytest runs alongside data workers.
torch.set_num_threads(2)


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
