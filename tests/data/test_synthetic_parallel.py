"""The parallel synthetic generator writes exactly the serial generator's files."""

from __future__ import annotations

from pathlib import Path

import pytest

from unreid.data import synthetic, synthetic_parallel
from unreid.data.synthetic import SynthConfig, is_generated

SMALL = SynthConfig(
    ids=12, cameras=3, images_per_id_camera=(1, 3), distractors=7, seed=5, height=48, width=24
)


def files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_two_workers_write_the_serial_bytes(tmp_path):
    serial_counts = synthetic.generate_synthetic(tmp_path / "serial", SMALL)
    counts = synthetic_parallel.generate_synthetic(tmp_path / "parallel", SMALL, workers=2)
    assert counts == serial_counts
    want, got = files(tmp_path / "serial"), files(tmp_path / "parallel")
    assert len(want) == 1 + sum(
        counts[k] for k in ("train_images", "query_images", "gallery_images")
    )
    assert got.keys() == want.keys()
    assert [name for name in want if got[name] != want[name]] == []
    assert is_generated(tmp_path / "parallel", SMALL)


def test_chunks_keep_identities_whole_and_cover_every_job():
    jobs = synthetic.plan_jobs(SMALL)
    chunks = synthetic_parallel._chunks(jobs, 5)
    assert sorted(j for c in chunks for j in c) == sorted(jobs)
    owner = {}
    for i, chunk in enumerate(chunks):
        for _split, pid, _cam, _k in chunk:
            if pid:
                assert owner.setdefault(pid, i) == i  # one chunk per identity
    assert len(chunks) > 1


def test_negative_workers_is_refused(tmp_path):
    with pytest.raises(ValueError, match="workers must be >= 0"):
        synthetic_parallel.generate_synthetic(tmp_path, SMALL, workers=-1)
