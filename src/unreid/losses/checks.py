"""The input check every loss runs before touching its tensors.

The losses are pure functions called from methods written by different
people; a wrong shape or an out-of-range id should fail with a message that
names the argument and says what was expected and what was found, not as an
indexing error deep inside a softmax. One check keeps those messages (and the
conditions) the same for every loss.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["check_ids", "check_loss_inputs", "check_shape"]


def check_loss_inputs(
    x: Tensor,
    targets: Tensor,
    bank: Tensor,
    *,
    bank_ndim: int = 2,
    temperature: float | None = None,
    label_smoothing: float | None = None,
    targets_name: str = "targets",
) -> None:
    """Raise unless `x` (B, D), `targets` (B,) and `bank` fit together, B >= 1.

    `bank` is (C, D) rows, or (C, K, D) instances per row with `bank_ndim=3`;
    `targets` must be integer ids of its C rows. `temperature` (> 0, finite)
    and `label_smoothing` (in [0, 1]) are checked when given.
    """
    if not isinstance(x, Tensor) or x.dim() != 2:
        raise ValueError(f"x must be a 2-D tensor (B, D), found {_shape(x)}")
    layout = "(C, K, " if bank_ndim == 3 else "(C, "
    if not isinstance(bank, Tensor) or bank.dim() != bank_ndim or bank.shape[-1] != x.shape[1]:
        raise ValueError(
            f"bank must have shape {layout}{x.shape[1]}) to match x, found {_shape(bank)}"
        )
    if bank.shape[0] == 0:
        raise ValueError("bank must have at least one row, found 0")
    check_ids(targets_name, targets, bank.shape[0], "bank row ids", length=x.shape[0])
    if x.shape[0] == 0:
        raise ValueError("x must hold at least one embedding, found an empty batch")
    if temperature is not None:
        temperature = float(temperature)
        if not (temperature > 0 and math.isfinite(temperature)):
            raise ValueError(f"temperature must be a finite number > 0, found {temperature}")
    if label_smoothing is not None:
        label_smoothing = float(label_smoothing)
        if not (0.0 <= label_smoothing <= 1.0):
            raise ValueError(f"label_smoothing must be in [0, 1], found {label_smoothing}")


def check_ids(name: str, ids: Tensor, bound: int, what: str, *, length: int | None = None) -> None:
    """Raise unless `ids` is a 1-D integer tensor (of `length`, if given) with values in [0, bound)."""
    if not isinstance(ids, Tensor) or ids.dim() != 1 or (length is not None and len(ids) != length):
        expected = f"({length},)" if length is not None else "(N,)"
        raise ValueError(f"{name} must have shape {expected}, found {_shape(ids)}")
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor, found {ids.dtype}")
    if ids.numel() and (ids.min() < 0 or ids.max() >= bound):
        raise ValueError(
            f"{name} must be {what} in [0, {bound}), found values in "
            f"[{int(ids.min())}, {int(ids.max())}]"
        )


def check_shape(name: str, value: Tensor, expected: tuple[int, ...]) -> None:
    """Raise unless `value` is a tensor of shape `expected` (side inputs: cameras, tables)."""
    if not isinstance(value, Tensor) or tuple(value.shape) != tuple(expected):
        raise ValueError(f"{name} must have shape {tuple(expected)}, found {_shape(value)}")


def _shape(value: object) -> str:
    return str(tuple(value.shape)) if isinstance(value, Tensor) else type(value).__name__
