"""The shared loss-input check: what each bad input is told, for (C, D) and (C, K, D) banks."""

from __future__ import annotations

import pytest
import torch

from unreid.losses import (
    check_loss_inputs,
    cluster_nce,
    hard_instance_nce,
    inter_camera_nce,
    intra_camera_nce,
    selective_nce,
)
from unreid.losses.checks import check_ids, check_shape

X = torch.zeros(3, 4)
Y = torch.tensor([0, 1, 1])


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        ((X, Y, torch.zeros(2, 4)), {}, None, None),
        ((X, Y, torch.zeros(2, 5, 4)), {"bank_ndim": 3}, None, None),
        ((X, Y, torch.zeros(2, 5, 4)), {}, ValueError, r"bank must have shape \(C, 4\) to match"),
        (
            (X, Y, torch.zeros(2, 4)),
            {"bank_ndim": 3},
            ValueError,
            r"shape \(C, K, 4\) to match x, found \(2, 4\)",
        ),
        ((X, Y, "bank"), {}, ValueError, r"to match x, found str"),
        (
            (X[0], Y, torch.zeros(2, 4)),
            {},
            ValueError,
            r"x must be a 2-D tensor \(B, D\), found \(4,\)",
        ),
        ((X, Y, torch.zeros(0, 4)), {}, ValueError, "at least one row"),
        (
            (X, Y[:2], torch.zeros(2, 4)),
            {},
            ValueError,
            r"targets must have shape \(3,\), found \(2,\)",
        ),
        ((X, Y.bool(), torch.zeros(2, 4)), {}, TypeError, "targets must be an integer tensor"),
        (
            (X, Y + 1, torch.zeros(2, 4)),
            {},
            ValueError,
            r"bank row ids in \[0, 2\), found values in \[1, 2\]",
        ),
        ((X[:0], Y[:0], torch.zeros(2, 4)), {}, ValueError, "empty batch"),
        (
            (X, Y, torch.zeros(2, 4)),
            {"temperature": float("nan")},
            ValueError,
            "temperature must be",
        ),
        ((X, Y, torch.zeros(2, 4)), {"label_smoothing": -0.1}, ValueError, "label_smoothing must"),
        (
            (X, Y + 5, torch.zeros(2, 4)),
            {"targets_name": "proxy_rows"},
            ValueError,
            "proxy_rows must be",
        ),
    ],
)
def test_check_loss_inputs(args, kwargs, error, match):
    if error is None:
        check_loss_inputs(*args, **kwargs)
        return
    with pytest.raises(error, match=match):
        check_loss_inputs(*args, **kwargs)


def test_side_checks():
    check_shape("cameras", torch.zeros(3), (3,))
    with pytest.raises(ValueError, match=r"cameras must have shape \(3,\), found \(2,\)"):
        check_shape("cameras", torch.zeros(2), (3,))
    check_ids("positions", torch.tensor([2, 0]), 3, "batch positions")
    with pytest.raises(ValueError, match=r"positions must be batch positions in \[0, 3\)"):
        check_ids("positions", torch.tensor([3]), 3, "batch positions")
    with pytest.raises(ValueError, match=r"positions must have shape \(N,\), found \(1, 1\)"):
        check_ids("positions", torch.zeros(1, 1, dtype=torch.long), 3, "batch positions")


def test_every_loss_runs_the_shared_check():
    bank, rows = torch.eye(4)[:2], torch.tensor([0, 1, 2])
    cams = torch.zeros(3, dtype=torch.long)
    calls = [
        lambda: cluster_nce(X, rows, bank),
        lambda: selective_nce(X, rows, bank),
        lambda: hard_instance_nce(X, rows, bank[:, None]),
        lambda: intra_camera_nce(X, rows, cams, bank, torch.zeros(2, dtype=torch.long)),
        lambda: inter_camera_nce(
            X, rows, cams, bank, torch.arange(2), torch.zeros(2, dtype=torch.long)
        ),
    ]
    for call in calls:
        with pytest.raises(ValueError, match=r"ids in \[0, 2\), found values in \[0, 2\]"):
            call()
