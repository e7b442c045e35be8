"""What several commands share: the cache folder, metric printing, the histogram baseline."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

# The command the walkthrough (docs/walkthrough.md) starts one's own footage with;
# `unreid --help` and `unreid train --help` show it as is.
OWN_FOOTAGE_TRAIN = (
    "unreid train --config cluster_contrast/market1501 --out runs/mycams "
    "data.dataset=folder data.root=crops eval.select_best_on=none"
)
OWN_FOOTAGE_NOTES = """\
    (crops/ holds one sub-folder per camera: crops/cam1/*.jpg, crops/cam2/..., no labels;
    on a CPU use --config demo, ResNet-18 at 128x64; offline add model.pretrained=none)"""


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
