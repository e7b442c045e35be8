"""The synthetic set written by several processes, byte for byte what the serial generator writes.

A Market-sized set (about 13,000 training crops at 256×128, as many again for
query and gallery) takes minutes in one process; the benchmark and `unreid
synth` want it in about a minute on a 16-core machine. Every file's content
depends only on the config and its own name (`synthetic.py` seeds each draw by
(seed, purpose, ids)), so the identities can be split across processes in any
way and the files stay the same; the test compares every byte with the serial
output.

This module reaches into `synthetic.py`'s private helpers (job list, cameras,
identities, the renderer): the serial generator keeps its per-image body
inline, and the two loops must stay the same, which that test enforces.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from unreid.data import synthetic as serial
from unreid.data.synthetic import Job

__all__ = ["generate_synthetic"]

_worker_cameras: list[Any] = []  # per process: the cameras, built once by `_start`


def _start(cfg: serial.SynthConfig) -> None:
    _worker_cameras[:] = serial.build_cameras(cfg)


def _render_chunk(out: str, cfg: serial.SynthConfig, jobs: Sequence[Job]) -> int:
    return serial.write_images(Path(out), cfg, jobs, _worker_cameras)


def _chunks(jobs: list[Job], parts: int) -> list[list[Job]]:
    """Whole identities per chunk (an identity is drawn once per chunk), about equal in images."""
    by_pid: dict[tuple[int, int], list[Job]] = {}
    for job in jobs:  # distractors (pid 0) are independent images: one group each
        key = (job[1], job[3] if job[1] == 0 else 0)
        by_pid.setdefault(key, []).append(job)
    size = max(1, -(-len(jobs) // parts))
    chunks: list[list[Job]] = [[]]
    for group in by_pid.values():
        if len(chunks[-1]) >= size:
            chunks.append([])
        chunks[-1].extend(group)
    return [c for c in chunks if c]


def generate_synthetic(
    out_dir: str | Path, cfg: serial.SynthConfig, workers: int = 0, progress: bool = False
) -> dict[str, Any]:
    """`synthetic.generate_synthetic` with the images rendered by `workers` processes.

    `workers` 0 means one per CPU; 1 is the serial generator itself. The
    result, the files and `synthetic.json` (written incomplete first, complete
    last) are the serial ones.
    """
    if workers < 0:
        raise ValueError(f"workers must be >= 0 (0 = one per CPU), found {workers}")
    workers = workers or os.cpu_count() or 1
    if workers == 1:
        return serial.generate_synthetic(out_dir, cfg, progress=progress)
    out, jobs = serial.start_output(out_dir, cfg)
    chunks = _chunks(jobs, workers * 8)  # several per worker: the slow ones even out
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), desc="synthetic", unit="img")
    # fork where there is one: no re-import per worker, and it works from `python -c` or
    # stdin, which spawn cannot re-run; the workers use numpy and PIL only, never the
    # parent's threads (torch's pool), so inheriting them is harmless
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with ProcessPoolExecutor(workers, context, initializer=_start, initargs=(cfg,)) as pool:
        futures = [pool.submit(_render_chunk, str(out), cfg, c) for c in chunks]
        for done in as_completed(futures):
            n = done.result()  # re-raises a worker's error here
            if bar is not None:
                bar.update(n)
    if bar is not None:
        bar.close()
    return serial.finish_output(out, cfg, jobs)
