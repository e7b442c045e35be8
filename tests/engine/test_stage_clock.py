"""Seconds per stage in log.jsonl: every stage of the loop, summed within an epoch."""

from __future__ import annotations

import json
import time

import torch

from unreid.engine.stage_clock import StageClock


def test_a_stage_used_twice_is_charged_both_times_and_an_error_still_counts() -> None:
    clock = StageClock(torch.device("cpu"))
    for _ in range(2):
        with clock.stage("extract"):
            time.sleep(0.02)
    try:
        with clock.stage("cluster"):
            time.sleep(0.01)
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    rec = clock.record()
    assert set(rec) == {"extract", "cluster"}
    assert 0.04 <= rec["extract"] < 1.0 and 0.01 <= rec["cluster"] < 1.0


def test_every_epoch_of_a_run_logs_its_stages_within_the_epochs_seconds(finished) -> None:
    records = [json.loads(x) for x in (finished / "log.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r["epoch"] >= 1]
    assert epochs
    for r in epochs:
        stages = r["stage_seconds"]
        assert set(stages) == {"extract", "cluster", "memories", "train", "evaluate"}
        assert all(s >= 0 for s in stages.values()) and stages["train"] > 0
        assert sum(stages.values()) <= r["seconds"] + 0.05  # the epoch's rounding
