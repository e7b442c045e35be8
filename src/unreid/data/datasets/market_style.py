"""Benchmarks released as one flat folder of images per split, identity and camera in each
file name: Market-1501, DukeMTMC-reID, PersonX, VeRi-776 and our synthetic generator.

The docstrings of the `load_*` functions record the layout facts each one relies on.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from unreid.data.datasets.layout import (
    PID_CAM_PATTERN,
    LoadReport,
    NameFormat,
    absolute_root,
    camera_range,
    found_in,
    locate,
    require_dir,
    scan_image_folder,
)
from unreid.data.datasets.registry import DATASETS
from unreid.data.samples import DatasetLayoutError, ReidDataset, Sample

MARKET_SPLITS = (
    ("train", "bounding_box_train"),
    ("query", "query"),
    ("gallery", "bounding_box_test"),
)
"""(split, folder name) of the Market-1501 layout, which most releases copy."""

MARKET_FORMAT = NameFormat(
    dataset="market1501",
    pattern=re.compile(r"(?P<pid>-1|\d+)_c(?P<cam>\d+)s\d+_(?P<frame>\d+)_\d+"),
    example="0002_c1s1_000451_03.jpg",
    cameras=camera_range(1, 6),
    expected="<pid>_c<camera>s<sequence>_<frame>_<box>.jpg",
)
DUKE_FORMAT = NameFormat(
    dataset="dukemtmcreid",
    pattern=re.compile(r"(?P<pid>-1|\d+)_c(?P<cam>\d+)_f(?P<frame>\d+)"),
    example="0005_c2_f0046985.jpg",
    cameras=camera_range(1, 8),
    expected="<pid>_c<camera>_f<frame>.jpg",
)
VERI_FORMAT = NameFormat(
    dataset="veri",
    pattern=re.compile(r"(?P<pid>-1|\d+)_c(?P<cam>\d+)_(?P<frame>\d+)_\d+"),
    example="0001_c001_00016450_0.jpg",
    cameras=camera_range(1, 20),
    expected="<vehicle id>_c<camera>_<frame>_<index>.jpg",
)
PERSONX_FORMAT = NameFormat(
    dataset="personx",
    pattern=PID_CAM_PATTERN,
    example="0001_c3s1_0001.jpg",
    cameras={3: 0, 4: 1, 8: 2, 10: 3, 11: 4, 12: 5},
    expected="<pid>_c<camera>[<anything>].jpg",
)
# Our generator writes Market names but may use more than Market's six cameras.
SYNTHETIC_FORMAT = NameFormat(
    dataset="synthetic",
    pattern=MARKET_FORMAT.pattern,
    example=MARKET_FORMAT.example,
    cameras=camera_range(1, 99),
    expected=MARKET_FORMAT.expected,
)

_VERI_SPLITS = (("train", "image_train"), ("query", "image_query"), ("gallery", "image_test"))


def _load_market_style(
    root: Path,
    fmt: NameFormat,
    candidates: Sequence[str],
    split_dirs: Sequence[tuple[str, str]] = MARKET_SPLITS,
) -> tuple[ReidDataset, LoadReport]:
    markers = [sub for _, sub in split_dirs]
    base = locate(root, fmt.dataset, candidates, markers)
    looked_for = candidates if base == root else ()
    return load_market_dirs(base, fmt, looked_for, split_dirs)


def load_market_dirs(
    base: Path,
    fmt: NameFormat,
    looked_for: Sequence[str] = (),
    split_dirs: Sequence[tuple[str, str]] = MARKET_SPLITS,
) -> tuple[ReidDataset, LoadReport]:
    """One flat folder per split; `split_dirs` maps train/query/gallery to folder names.

    `looked_for` names the sub-folders already tried under `base`, so a missing split folder
    explains where else the loader searched.
    """
    layout = ", ".join(sub + "/" for _, sub in split_dirs)
    splits: dict[str, list[Sample]] = {}
    report: LoadReport = {}
    for split, sub in split_dirs:
        folder = base / sub
        if not folder.is_dir():
            also = (
                f"; also looked for {', '.join(c + '/' for c in looked_for)} inside it"
                if looked_for
                else ""
            )
            raise DatasetLayoutError(
                f"{fmt.dataset}: expected folder {folder} (layout: {layout}); "
                f"found in {base}: {found_in(base)}{also}"
            )
        splits[split], report[split] = scan_image_folder(folder, fmt)
    dataset = ReidDataset(
        fmt.dataset, str(base), splits["train"], splits["query"], splits["gallery"]
    )
    return dataset, report


@DATASETS.register("market1501")
def load_market1501(root: str | Path) -> tuple[ReidDataset, LoadReport]:
    """Market-1501.

    Layout: bounding_box_train/, query/, bounding_box_test/ with names like
    `0002_c1s1_000451_03.jpg` = pid 2, camera c1 (of 1..6, stored 0-based), sequence s1,
    frame 451 (frame number within that camera sequence), box 03. pid -1 marks junk boxes
    (dropped); pid 0000 marks distractors (kept, never match). `root` may be the dataset
    folder or a parent holding `Market-1501-v15.09.15/`, `market1501/Market-1501-v15.09.15/`,
    `Market-1501/` or `market1501/` (tried in that order).
    """
    candidates = (
        "Market-1501-v15.09.15",
        "market1501/Market-1501-v15.09.15",
        "Market-1501",
        "market1501",
    )
    return _load_market_style(absolute_root(root), MARKET_FORMAT, candidates)


@DATASETS.register("dukemtmcreid")
def load_dukemtmcreid(root: str | Path) -> tuple[ReidDataset, LoadReport]:
    """DukeMTMC-reID.

    Same three folders as Market-1501; names like `0005_c2_f0046985.jpg` = pid 5, camera c2
    (of 1..8, stored 0-based), frame 46985. `root` may be the dataset folder or a parent
    holding `DukeMTMC-reID/`, `dukemtmcreid/DukeMTMC-reID/` or `dukemtmcreid/`.
    """
    candidates = ("DukeMTMC-reID", "dukemtmcreid/DukeMTMC-reID", "dukemtmcreid")
    return _load_market_style(absolute_root(root), DUKE_FORMAT, candidates)


@DATASETS.register("personx")
def load_personx(root: str | Path) -> tuple[ReidDataset, LoadReport]:
    """PersonX (the subset used by SpCL / Cluster Contrast / OpenUnReID).

    Layout: bounding_box_train/, query/, bounding_box_test/ under `PersonX/` (SpCL, Cluster
    Contrast) or `personx/subset1/` (OpenUnReID). Names start `<pid>_c<camera>`; only pid and
    camera are read (no frame). The subset uses the raw cameras 3, 4, 8, 10, 11, 12, which the
    reference loaders remap to 1..6; we store them 0-based: 3->0, 4->1, 8->2, 10->3, 11->4,
    12->5. Any other camera number is a layout error.
    """
    candidates = ("PersonX", "personx/PersonX", "subset1", "personx/subset1", "personx")
    return _load_market_style(absolute_root(root), PERSONX_FORMAT, candidates)


@DATASETS.register("veri", aliases=("veri776",))
def load_veri(root: str | Path) -> tuple[ReidDataset, LoadReport]:
    """VeRi-776 (vehicles; registry names `veri` and `veri776`).

    Layout: image_train/, image_query/, image_test/ (the gallery) directly under `root` or
    under `VeRi/`, `veri/VeRi/` (Cluster Contrast's `data/veri/VeRi/`) or `veri/` (fast-reid).
    Names like `0001_c001_00016450_0.jpg` = vehicle id 1, camera c001 (of 1..20, stored
    0-based), frame 16450, then an index we do not use. pid -1 is junk (dropped, counted) as
    in the reference loaders. The release's name_*.txt lists, gt_index/jk_index, xml labels
    and track files are not read: the reference loaders only list the image folders, and
    evaluation uses the Market protocol as they do (per query, gallery images of the same
    vehicle from the same camera are removed).
    """
    candidates = ("VeRi", "veri/VeRi", "veri")
    return _load_market_style(absolute_root(root), VERI_FORMAT, candidates, _VERI_SPLITS)


@DATASETS.register("synthetic")
def load_synthetic(root: str | Path) -> tuple[ReidDataset, LoadReport]:
    """Our synthetic generator's output: Market-1501 names and folders directly under `root`.

    No sub-folder search (the generator's output folder is the dataset) and cameras up to
    c99, since the generator is not limited to Market's six.
    """
    root = absolute_root(root)
    require_dir(root, SYNTHETIC_FORMAT.dataset)
    return load_market_dirs(root, SYNTHETIC_FORMAT)
