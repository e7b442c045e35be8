"""Shared fixtures: one tiny synthetic dataset per test session, written in Market layout."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from unreid.data.synthetic import SynthConfig, generate_synthetic

# Two cores: keep torch from oversubscribing when pytest runs alongside data workers.
torch.set_num_threads(2)

TINY = SynthConfig(
    ids=48, cameras=3, images_per_id_camera=(2, 4), distractors=20, seed=3, height=96, width=48
)


@pytest.fixture(scope="session")
def tiny_synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    generate_synthetic(root, TINY)
    return root


# A second domain for adaptation tests: other people, other scenery, stronger camera styles.
TINY_B = SynthConfig(
    ids=24,
    cameras=2,
    images_per_id_camera=(2, 3),
    distractors=0,
    seed=11,
    height=96,
    width=48,
    scenery_saturation=0.8,
    colour_cast=0.15,
)


@pytest.fixture(scope="session")
def tiny_synthetic_b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic_b")
    generate_synthetic(root, TINY_B)
    return root
