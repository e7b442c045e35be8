"""MSMT17, whose official releases list images in text files instead of naming splits by
folder, plus the Market-style re-release that Cluster Contrast uses."""

from __future__ import annotations

import os
import re
from pathlib import Path

from unreid.data.datasets.layout import (
    IMAGE_EXTENSIONS,
    PID_CAM_PATTERN,
    LoadReport,
    NameFormat,
    absolute_root,
    camera_range,
    empty_split_report,
    first_items,
    found_in,
    is_image_file,
    require_dir,
)
from unreid.data.datasets.market_style import MARKET_SPLITS, load_market_dirs
from unreid.data.datasets.registry import DATASETS
from unreid.data.samples import DatasetLayoutError, ReidDataset, Sample

MSMT17_MARKET_FORMAT = NameFormat(
    dataset="msmt17",
    pattern=PID_CAM_PATTERN,
    example="0000_c1_0303morning_0015_0.jpg",
    cameras=camera_range(1, 15),
    expected="<pid>_c<camera>[_<anything>].jpg",
)

_MSMT_CANDIDATES = (
    "MSMT17_V1",
    "MSMT17_V2",
    "msmt17/MSMT17_V1",
    "msmt17/MSMT17_V2",
    "MSMT17",
    "msmt17",
)
# train = list_train + list_val: the published 32,621 training images are both lists
# (30,248 + 2,373), and the Market-style release's bounding_box_train holds both.
_MSMT_LISTS = (
    ("train", ("list_train.txt", "list_val.txt"), 0),
    ("query", ("list_query.txt",), 1),
    ("gallery", ("list_gallery.txt",), 1),
)
_MSMT_IMAGE_DIRS = {"V1": ("train", "test"), "V2": ("mask_train_v2", "mask_test_v2")}
_MSMT_LAYOUTS = (
    "(a) MSMT17_V1/ with train/, test/, list_train.txt, list_val.txt, list_query.txt, "
    "list_gallery.txt; (b) MSMT17_V2/ with mask_train_v2/, mask_test_v2/ and the same four "
    "list files; (c) Market-style MSMT17_V1/ with bounding_box_train/, query/, "
    "bounding_box_test/ (Cluster Contrast release)"
)
_MSMT_LINE = "<relative path> <pid>, e.g. 0000/0000_000_01_0303morning_0015_0.jpg 0"


def _entries_by_lower_name(folder: Path) -> dict[str, Path]:
    return {e.name.lower(): folder / e.name for e in os.scandir(folder)}


def _msmt_form(folder: Path) -> str | None:
    names = _entries_by_lower_name(folder)
    if any(n.startswith("list_") and n.endswith(".txt") for n in names):
        return "lists"
    if any(sub in names for _, sub in MARKET_SPLITS):
        return "market"
    return None


def _parse_msmt_line(
    line: str, list_file: Path, number: int, image_dir: Path
) -> tuple[Path, int, int, int | None]:
    def bad(why: str) -> DatasetLayoutError:
        return DatasetLayoutError(
            f"msmt17: {list_file}:{number}: {why} in line {line!r}; expected {_MSMT_LINE}"
        )

    fields = line.split()
    if len(fields) != 2:
        raise bad(f"found {len(fields)} fields instead of 2")
    rel, pid_text = fields
    if not re.fullmatch(r"-?[0-9]{1,9}", pid_text, flags=re.ASCII) or int(pid_text) < -1:
        raise bad(f"pid {pid_text!r} is not a non-negative integer")
    if not is_image_file(rel):
        raise bad(f"{rel!r} is not an image path ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    parts = Path(rel).stem.split("_")
    if len(parts) < 3 or not re.fullmatch(r"[0-9]{1,4}", parts[2]):
        raise bad("file name has no camera as its third '_' field")
    camera = int(parts[2])
    if not 1 <= camera <= 15:
        raise bad(f"camera {camera} is outside 1..15")
    frame = int(parts[4]) if len(parts) > 4 and re.fullmatch(r"[0-9]{1,12}", parts[4]) else None
    return image_dir / rel, int(pid_text), camera - 1, frame


def _load_msmt_lists(base: Path) -> tuple[ReidDataset, LoadReport]:
    names = _entries_by_lower_name(base)
    version = None
    for candidate, dirs in _MSMT_IMAGE_DIRS.items():
        if all(d in names and names[d].is_dir() for d in dirs):
            version = candidate
            break
    if version is None:
        raise DatasetLayoutError(
            f"msmt17: list files found in {base} but not their image folders; expected "
            f"train/ and test/ (MSMT17_V1) or mask_train_v2/ and mask_test_v2/ (MSMT17_V2); "
            f"found in {base}: {found_in(base)}"
        )
    image_dirs = [names[d] for d in _MSMT_IMAGE_DIRS[version]]
    splits: dict[str, list[Sample]] = {}
    report: LoadReport = {}
    missing: list[str] = []
    for split, list_names, dir_index in _MSMT_LISTS:
        samples: list[Sample] = []
        split_report = empty_split_report()
        seen: set[str] = set()
        for list_name in list_names:
            list_file = names.get(list_name)
            if list_file is None or not list_file.is_file():
                raise DatasetLayoutError(
                    f"msmt17: expected list file {base / list_name} ({version} layout: "
                    f"{', '.join(d + '/' for d in _MSMT_IMAGE_DIRS[version])} and "
                    f"list_train.txt, list_val.txt, list_query.txt, list_gallery.txt); "
                    f"found in {base}: {found_in(base)}"
                )
            with open(list_file, encoding="utf-8") as handle:
                for number, raw in enumerate(handle, start=1):
                    line = raw.strip()
                    if not line:
                        continue
                    path, pid, camera, frame = _parse_msmt_line(
                        line, list_file, number, image_dirs[dir_index]
                    )
                    if str(path) in seen:
                        raise DatasetLayoutError(
                            f"msmt17: {list_file}:{number}: {path} is listed twice in the "
                            f"{split} split"
                        )
                    seen.add(str(path))
                    if pid == -1:
                        split_report["junk"] += 1
                        continue
                    if not path.is_file():
                        split_report["missing"] += 1
                        missing.append(str(path))
                        continue
                    samples.append(Sample(str(path), camera, pid, frame))
        split_report["images"] = len(samples)
        splits[split] = sorted(samples, key=lambda s: s.path)
        report[split] = split_report
    if missing:
        raise DatasetLayoutError(
            f"msmt17: {len(missing)} image(s) listed in the {version} list files under {base} "
            f"are not on disk: {first_items(missing)}"
        )
    for split, samples in splits.items():
        if not samples:
            raise DatasetLayoutError(f"msmt17: the {split} lists under {base} list no images")
    dataset = ReidDataset("msmt17", str(base), splits["train"], splits["query"], splits["gallery"])
    return dataset, report


@DATASETS.register("msmt17")
def load_msmt17(root: str | Path) -> tuple[ReidDataset, LoadReport]:
    """MSMT17, in any of its three common layouts (detected automatically).

    (a) Official V1: `MSMT17_V1/` holding image folders `train/`, `test/` and the lists
        `list_train.txt`, `list_val.txt`, `list_query.txt`, `list_gallery.txt`. Each line is
        `<path relative to train/ or test/> <pid>`, e.g.
        `0000/0000_000_01_0303morning_0015_0.jpg 0`; in the file name the third `_` field is
        the camera (1..15, stored 0-based) and the fifth the frame within its time slot.
    (b) Official V2 (faces blurred): `MSMT17_V2/` with `mask_train_v2/` and `mask_test_v2/`
        instead of `train/` and `test/`; same list files and names.
    (c) Market-style (Cluster Contrast's release, `msmt17/MSMT17_V1/`): bounding_box_train/,
        query/, bounding_box_test/ with names starting `<pid>_c<camera>` (cameras 1..15).

    For (a)/(b) train = list_train + list_val, matching the usual 32,621-image training set
    (torchreid calls this `combineall`, OpenUnReID `trainval`). Query and gallery pids are
    the lists' own; pid 0 is a real identity in MSMT17, not a distractor. Any listed image
    missing on disk is an error: a dataset with holes would silently skew every metric.
    `root` may be the version folder or a parent holding `MSMT17_V1/`, `MSMT17_V2/`,
    `msmt17/MSMT17_V1/`, `msmt17/MSMT17_V2/`, `MSMT17/` or `msmt17/`.
    """
    root = absolute_root(root)
    require_dir(root, "msmt17")
    for base in (root, *(root / c for c in _MSMT_CANDIDATES)):
        if not base.is_dir():
            continue
        form = _msmt_form(base)
        if form == "lists":
            return _load_msmt_lists(base)
        if form == "market":
            return load_market_dirs(base, MSMT17_MARKET_FORMAT)
    raise DatasetLayoutError(
        f"msmt17: no MSMT17 layout found under {root} (also tried "
        f"{', '.join(c + '/' for c in _MSMT_CANDIDATES)}); expected one of {_MSMT_LAYOUTS}; "
        f"found in {root}: {found_in(root)}"
    )
