"""`log.jsonl` read for the report: tolerant of a run still writing it.

The report may be built while training goes on (or after a crash), so a torn
last line or a damaged one is noted and skipped, not fatal. A resumed run can
log an epoch twice; the later line wins, as it describes the checkpoint kept.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["RunLog", "read_log"]

Series = tuple[list[int], list[float]]


@dataclass
class RunLog:
    records: list[dict[str, Any]] = field(default_factory=list)  # by epoch, 0 = untrained
    problems: list[str] = field(default_factory=list)

    @property
    def epochs(self) -> list[dict[str, Any]]:
        """Training epochs (1, 2, ...), without the untrained evaluation."""
        return [r for r in self.records if r["epoch"] >= 1]

    def series(self, *keys: str) -> Series:
        """(epochs, values) where the nested value `keys` is a number."""
        xs: list[int] = []
        ys: list[float] = []
        for rec in self.records:
            value: Any = rec
            for key in keys:
                value = value.get(key) if isinstance(value, dict) else None
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                xs.append(rec["epoch"])
                ys.append(float(value))
        return xs, ys

    def loss_names(self) -> list[str]:
        names: set[str] = set()
        for rec in self.epochs:
            if isinstance(rec.get("losses"), dict):
                names.update(rec["losses"])
        return sorted(names)


def read_log(path: str | Path) -> RunLog:
    """Every readable epoch record of `path`; `problems` says what was skipped and why."""
    path = Path(path)
    out = RunLog()
    if not path.is_file():
        out.problems.append(f"{path.name} does not exist yet: no epoch has finished")
        return out
    by_epoch: dict[int, dict[str, Any]] = {}
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            out.problems.append(f"{path.name} line {number} is not complete JSON (skipped)")
            continue
        epoch = rec.get("epoch") if isinstance(rec, dict) else None
        if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
            out.problems.append(f"{path.name} line {number} has no epoch number (skipped)")
            continue
        by_epoch[epoch] = rec
    out.records = [by_epoch[e] for e in sorted(by_epoch)]
    return out
