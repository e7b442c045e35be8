"""A run folder as an interruption at an epoch boundary would leave it, without a second run.

Resumed = uninterrupted is checked by resuming a copy of the uninterrupted run's folder
taken right after epoch `epoch` was recorded (its checkpoint, log and config written):
what a kill between epochs leaves, and what a separate shorter run would have cost a
whole setup, epoch and evaluation to produce.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def copied_after(epoch: int, dest: Path) -> Iterator[None]:
    """While open, the run that records epoch `epoch` (1-based) is copied to `dest` then."""
    import unreid.engine.recorder as recorder

    real = recorder.RunRecorder.epoch

    def epoch_then_copy(rec, index, *args):
        real(rec, index, *args)
        if index + 1 == epoch and rec.main:  # its checkpoint is written
            shutil.copytree(rec.run_dir, dest)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(recorder.RunRecorder, "epoch", epoch_then_copy)
        yield
    assert dest.is_dir(), f"the run never recorded epoch {epoch}: nothing copied to {dest}"
