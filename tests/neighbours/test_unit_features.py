"""The unit-norm check: what passes, what fails, and with which message."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unreid.neighbours import UNIT_NORM_TOL, as_unit_features


def test_unit_rows_pass_as_contiguous_float32():
    x = np.eye(4, dtype=np.float64)[:, ::-1]  # float64 and not C-contiguous
    got = as_unit_features(x)
    assert got.dtype == np.float32 and got.flags.c_contiguous
    np.testing.assert_array_equal(got, x)
    np.testing.assert_array_equal(as_unit_features(torch.from_numpy(x.copy()).T), x.T)


def test_tolerance_is_on_the_norm():
    x = np.eye(3, dtype=np.float32)
    x[1] *= 1 + UNIT_NORM_TOL / 2
    as_unit_features(x)
    x[1] = np.array([0, 1 + 2 * UNIT_NORM_TOL, 0], dtype=np.float32)
    with pytest.raises(ValueError, match="norm 1 within 0.001.*at row 1"):
        as_unit_features(x)


@pytest.mark.parametrize(
    ("features", "message"),
    [
        (np.ones(5, dtype=np.float32), "2-D"),
        (np.zeros((0, 4), dtype=np.float32), "non-empty"),
        (np.full((5, 2), np.nan, dtype=np.float32), "NaN"),
        (np.array([[1.0, np.inf]], dtype=np.float32), "NaN or infinite"),
        (np.ones((5, 2), dtype=np.float32), "L2-normalised"),
        (np.array([["a", "b"]]), "numeric"),
        (torch.ones(2, 2, dtype=torch.bool), "real numeric tensor"),
    ],
)
def test_bad_input(features, message):
    with pytest.raises(ValueError, match=message):
        as_unit_features(features, name="feats")


def test_name_is_in_the_message():
    with pytest.raises(ValueError, match="^query must be 2-D"):
        as_unit_features(np.ones(3), name="query")
