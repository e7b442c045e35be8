"""Turn the folder layouts of the usual re-ID benchmarks (and plain user folders) into samples.

Every dataset quirk lives in this package so that nothing downstream parses file names: the
shared rules in `layout`, one module per format family (`market_style`, `msmt17`, `folder`),
each registering its loaders in `DATASETS` on import. Each loader returns the dataset plus a
`LoadReport`: per split, how many images were kept and how many entries were dropped or
ignored and why.

Registered names (see `list_datasets`): dukemtmcreid, folder, market1501, msmt17, personx,
synthetic, veri (alias veri776).
"""

from __future__ import annotations

import logging
from pathlib import Path

from unreid.data.datasets import folder, market_style, msmt17  # noqa: F401  (registration)
from unreid.data.datasets.layout import (
    IMAGE_EXTENSIONS,
    REPORT_KEYS,
    LoadReport,
    NameFormat,
    SplitReport,
    empty_split_report,
    is_image_file,
    scan_image_folder,
)
from unreid.data.datasets.registry import DATASETS, Loader, list_datasets
from unreid.data.samples import ReidDataset

__all__ = [
    "DATASETS",
    "IMAGE_EXTENSIONS",
    "REPORT_KEYS",
    "LoadReport",
    "Loader",
    "NameFormat",
    "SplitReport",
    "empty_split_report",
    "format_report",
    "is_image_file",
    "list_datasets",
    "load_dataset",
    "load_dataset_with_report",
    "scan_image_folder",
]

logger = logging.getLogger(__name__)

_REPORT_LABELS = {
    "junk": "junk dropped",
    "distractors": "distractors kept",
    "ignored_files": "non-image entries ignored",
    "missing": "missing",
}


def load_dataset_with_report(name: str, root: str | Path) -> tuple[ReidDataset, LoadReport]:
    """Load by registry name and return what was dropped, for callers that record it.

    Names are matched case-insensitively (configs say Market1501 as often as market1501); an
    unknown name is reported as the caller spelled it, with the registered names.
    """
    key = name.strip().lower()
    return DATASETS.get(key if key in DATASETS else name)(Path(root))


def format_report(dataset: ReidDataset, report: LoadReport) -> str:
    """One line: kept images per split plus every non-zero drop/ignore count."""
    parts = []
    for split, counts in report.items():
        extras = [f"{counts[k]} {label}" for k, label in _REPORT_LABELS.items() if counts.get(k)]
        detail = f" ({', '.join(extras)})" if extras else ""
        parts.append(f"{split} {counts['images']} images{detail}")
    return f"{dataset.name} from {dataset.root}: " + "; ".join(parts)


def load_dataset(name: str, root: str | Path) -> ReidDataset:
    """Load by registry name, logging one summary line with the drop/ignore counts."""
    dataset, report = load_dataset_with_report(name, root)
    logger.info(format_report(dataset, report))
    return dataset
