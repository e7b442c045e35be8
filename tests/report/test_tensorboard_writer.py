"""TensorBoard scalars mirror log.jsonl: every numeric leaf, named by its path, step = epoch."""

from __future__ import annotations

import sys

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from unreid.report.tensorboard import TensorBoardWriter

RECORDS = [
    {"epoch": 0, "test": {"mAP": 0.1, "rank1": 0.2}},
    {
        "epoch": 1,
        "clusters": 17,
        "outliers": 3,
        "cluster_sizes": {"samples": 20, "outlier_ratio": 0.15, "size_median": 4.0},
        "losses": {"cluster_nce": 5.5, "camera_proxy": 1.25},
        "lr": 3.5e-4,
        "seconds": 12.0,
        "resumed": True,  # not a scalar: a flag
        "note": "text is not a scalar either",
        "test": {"mAP": 0.3, "rank1": 0.4},
    },
]


def leaves(record, prefix=""):
    """Numeric leaves from the definition: nested keys joined by '/', bools and text skipped."""
    out = {}
    for key, value in record.items():
        if isinstance(value, dict):
            out.update(leaves(value, prefix + key + "/"))
        elif type(value) in (int, float) and prefix + key != "epoch":
            out[prefix + key] = float(value)
    return out


def test_scalars_read_back_from_the_event_file(tmp_path):
    with TensorBoardWriter(tmp_path) as writer:
        for rec in RECORDS:
            writer.epoch(rec)
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    want: dict[str, list[tuple[int, float]]] = {}
    for rec in RECORDS:
        for name, value in leaves(rec).items():
            want.setdefault(name, []).append((rec["epoch"], value))
    tags = acc.Tags()["scalars"]
    assert sorted(tags) == sorted(want)
    assert {"test/mAP", "losses/cluster_nce", "cluster_sizes/outlier_ratio"} <= set(tags)
    for name, points in want.items():
        got = [(e.step, e.value) for e in acc.Scalars(name)]
        assert [s for s, _ in got] == [s for s, _ in points]
        assert [v for _, v in got] == pytest.approx([v for _, v in points], rel=1e-6)


def test_a_record_without_an_epoch_is_an_error(tmp_path):
    writer = TensorBoardWriter(tmp_path)
    with pytest.raises(ValueError, match="'epoch'"):
        writer.epoch({"clusters": 3})
    writer.close()


def test_missing_tensorboard_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(ImportError, match=r"unreid\[tensorboard\]"):
        TensorBoardWriter(tmp_path)
