"""TensorBoard scalars from the run's epoch records (`log.tensorboard=true`).

`log.jsonl` stays the source of truth; this mirrors each record so users can
watch a run in the tool they know. tensorboard is an optional extra, imported
only when a writer is made.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["TensorBoardWriter", "scalars"]

EVENTS_DIR = "tensorboard"


def scalars(record: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, float]]:
    """Every numeric leaf of a log record as (`a/b`, value); the epoch itself is the step."""
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from scalars(value, f"{name}/")
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and name != "epoch":
            yield name, float(value)


class TensorBoardWriter:
    """Event files under `run_dir/tensorboard/`, one step per epoch."""

    def __init__(self, run_dir: str | Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:
            raise ImportError(
                "log.tensorboard=true needs the tensorboard package: "
                "pip install 'unreid[tensorboard]' (or set log.tensorboard=false)"
            ) from err
        self.log_dir = Path(run_dir) / EVENTS_DIR
        self._writer = SummaryWriter(log_dir=str(self.log_dir))

    def epoch(self, record: dict[str, Any]) -> None:
        """Write one log.jsonl record's scalars at step `record["epoch"]`."""
        if "epoch" not in record:
            raise ValueError(f"a log record needs an 'epoch' key, found keys {sorted(record)}")
        step = int(record["epoch"])
        for name, value in scalars(record):
            self._writer.add_scalar(name, value, global_step=step)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> TensorBoardWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
