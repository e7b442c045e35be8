"""Helpers shared by the streaming and re-ranking tests, as fixtures."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest


def _labels(rng, nq, ng, ids=8, cams=3):
    return (
        rng.integers(0, ids + 2, nq),  # ids and ids + 1 never appear in the gallery
        rng.integers(-1, ids, ng),  # junk (-1) and identity 0 (a distractor when flagged)
        rng.integers(0, cams, nq),
        rng.integers(0, cams, ng),
    )


def _assert_same(got, want):
    assert got.mAP == want.mAP  # bit-identical, not approximately equal
    np.testing.assert_array_equal(got.cmc, want.cmc)
    assert got.num_valid_queries == want.num_valid_queries
    assert got.num_skipped_queries == want.num_skipped_queries


@pytest.fixture
def labels() -> Callable:
    """``labels(rng, nq, ng, ids=8, cams=3)`` -> random (q_pids, g_pids, q_cams, g_cams)."""
    return _labels


@pytest.fixture
def assert_same() -> Callable:
    """``assert_same(got, want)``: two RankingMetrics are bit-identical."""
    return _assert_same
