"""A module whose `bank` buffer only its own methods replace.

Losses read `memory.bank` during the forward pass and the memory's `update`
writes it after the optimizer step; that order is what makes the explicit
update equal the reference's update inside backward. Letting any caller
assign `memory.bank = ...` would make the order a convention instead of a
property of the class, so assignment is refused here.

The tensor still lives in `_buffers` under the name `bank`: state dicts,
`.to()`, `.double()` and checkpoints treat it as any registered buffer.
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["ReadOnlyBank"]


class ReadOnlyBank(nn.Module):
    """Holds the `bank` buffer; subclasses write it through `_replace_bank`."""

    def __init__(self, empty: Tensor) -> None:
        super().__init__()
        # not register_buffer: the `bank` property below would count as an existing attribute
        self._buffers["bank"] = empty

    @property
    def bank(self) -> Tensor:
        """The memory's rows; read-only (no gradient ever reaches them)."""
        return self._buffers["bank"]

    def _replace_bank(self, rows: Tensor) -> None:
        self._buffers["bank"] = rows

    def __setattr__(self, name: str, value: object) -> None:
        if name == "bank":
            raise AttributeError(
                f"{type(self).__name__}.bank is read-only: reset() and update() write it"
            )
        super().__setattr__(name, value)
