"""What a run looked like: an HTML report of a run folder, and optional TensorBoard scalars.

`write_report(run_dir)` is called at the end of `train` and `demo` and by
`unreid report`. Importing this package stays light (no matplotlib, no torch
model code) so the training loop can import it at no cost.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["write_report"]


def write_report(run_dir: str | Path, *, progress: bool = False) -> Path:
    """Write `run_dir/report.html` (self-contained: opens from disk) and return its path.

    Never raises for a missing optional part (no evaluation yet, no test split, no
    pseudo labels, no checkpoint): the page says what is missing. Raises only when
    `run_dir` is not a folder.
    """
    from unreid.report.build import write_report as build

    return build(run_dir, progress=progress)
