"""Training-set orders for GCL graphs."""

from __future__ import annotations

import numpy as np
import pytest

from unreid.data.orders import sample_order
from unreid.data.samples import Sample


def samples():
    return [
        Sample("/d/0002_c2s1_000300_00.jpg", 1, 2, 300),
        Sample("/d/0001_c1s1_000500_00.jpg", 0, 1, 500),
        Sample("/d/0001_c2s1_000100_00.jpg", 1, 1, 100),
        Sample("/d/0003_c1s1_000200_00.jpg", 0, 3, 200),
        Sample("/d/0002_c1s1_000200_00.jpg", 0, 2, 200),
    ]


def test_name_order_is_the_sorted_file_names():
    assert sample_order(samples(), "name").tolist() == [1, 2, 4, 0, 3]


def test_camera_frame_order_ignores_identity_and_breaks_ties_at_random():
    got = [sample_order(samples(), "camera_frame", seed=s).tolist() for s in range(20)]
    for order in got:
        assert order[2:] == [1, 2, 0] and set(order[:2]) == {3, 4}  # by camera, then frame
    assert {tuple(o[:2]) for o in got} == {(3, 4), (4, 3)}  # the frame-200 tie is not by name


def test_random_order_is_a_seeded_permutation():
    a = sample_order(samples(), "random", seed=3)
    assert sorted(a.tolist()) == list(range(5))
    assert np.array_equal(a, sample_order(samples(), "random", seed=3))


def test_errors_name_the_problem():
    no_frame = [*samples(), Sample("/d/x.jpg", 0, None, None)]
    with pytest.raises(ValueError, match="frame number.*x.jpg"):
        sample_order(no_frame, "camera_frame")
    with pytest.raises(ValueError, match="order must be one of"):
        sample_order(samples(), "pid")
