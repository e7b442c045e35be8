"""What several commands share: the cache folder, metric printing, the histogram baseline."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def cache_dir() -> Path:
    return Path(os.environ.get("UNREID_CACHE", Path.home() / ".cache" / "unreid"))


def histogram_baseline(dataset: Any) -> Any:
    from unreid.baseline import histogram_features
    from unreid.engine import evaluate_samples

    qf = histogram_features([s.path for s in dataset.query])
    gf = histogram_features([s.path for s in dataset.gallery])
    return evaluate_samples(qf, gf, dataset.query, dataset.gallery)


def print_metrics(title: str, m: Any) -> None:
    print(
        f"{title}: mAP {100 * m.mAP:.1f}  R1 {100 * m.rank1:.1f}  R5 {100 * m.rank5:.1f}  "
        f"R10 {100 * m.rank10:.1f}  ({m.num_valid_queries} queries)"
    )
