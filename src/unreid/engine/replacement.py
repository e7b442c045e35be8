"""The run an `--overwrite` replaces: kept aside until the new run has a checkpoint.

Deleting the old run's files when the new run starts loses both runs whenever
the new one stops before its first checkpoint (a degenerate first clustering,
a setting found wrong in epoch 1, Ctrl-C). So the old run folder is renamed to
the sibling `<name>.replaced`, comes back when the new run ends without a
`last.pth` (`put_back`), and is deleted only once that checkpoint is written
(`drop`). A process killed outright (SIGKILL, a power cut) cannot put it back
itself: the next command on the folder does (`recover`), before it judges what
the folder holds. The marker file in the new folder says the folder is a
replacement in progress, so `recover` never deletes a folder it did not create.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

log = logging.getLogger("unreid")

ASIDE_SUFFIX = ".replaced"
MARKER = ".replacing"  # in the new run's folder while the old run waits aside


def aside_path(run_dir: Path) -> Path:
    return run_dir.with_name(run_dir.name + ASIDE_SUFFIX)


def move_aside(run_dir: Path) -> Path:
    """Rename `run_dir` to its sibling `<name>.replaced`; an empty `run_dir` takes its place."""
    aside = aside_path(run_dir)
    if aside.exists():
        raise FileExistsError(
            f"--overwrite {run_dir}: {aside} already exists (a replaced run kept aside); "
            "move or delete it, then run again"
        )
    run_dir.rename(aside)
    run_dir.mkdir()
    (run_dir / MARKER).write_text(f"{aside.name}\n")
    log.info(
        "%s: the run it held is kept in %s until this run writes its first checkpoint",
        run_dir,
        aside,
    )
    return aside


def drop(run_dir: Path, aside: Path) -> None:
    """The new run has its checkpoint: the replaced one goes."""
    shutil.rmtree(aside)
    (run_dir / MARKER).unlink(missing_ok=True)
    log.info("%s: first checkpoint written; the replaced run (%s) is deleted", run_dir, aside)


def put_back(run_dir: Path, aside: Path) -> None:
    """The new run ended before its first checkpoint: its files go, the replaced run returns."""
    shutil.rmtree(run_dir)
    aside.rename(run_dir)
    log.warning(
        "%s: this run stopped before its first checkpoint; the run it was to replace is back "
        "in its folder, unchanged",
        run_dir,
    )


def recover(run_dir: Path) -> None:
    """Finish a replacement whose process was killed: put the old run back, or drop it."""
    aside = aside_path(run_dir)
    if not aside.is_dir():
        return
    if not run_dir.exists():  # killed between the rename and the new folder
        aside.rename(run_dir)
        log.warning("%s: restored the run an interrupted --overwrite had moved aside", run_dir)
        return
    if not (run_dir / MARKER).is_file():
        return  # not a folder this module made: leave both alone
    if (run_dir / "last.pth").is_file():
        drop(run_dir, aside)
    else:
        put_back(run_dir, aside)
