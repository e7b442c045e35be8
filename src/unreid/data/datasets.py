"""Turn the folder layouts of the usual re-ID benchmarks (and plain user folders) into samples.

Every dataset quirk lives here so that nothing downstream parses file names. Loaders read
names and list files only; they never decode images, so loading a 100k-image dataset is a
directory walk, not a data pass.

Each loader returns the dataset plus a `LoadReport`: per split, how many images were kept and
how many entries were dropped or ignored and why. Junk images and stray files are expected in
the public releases, so they are counted rather than fatal; anything that means the layout is
not what we think it is (a badly named image, an unknown camera, a listed file that is not on
disk) raises `DatasetLayoutError` naming the dataset, the path and what was expected.

Supported names (see `available_datasets`): market1501, dukemtmcreid, msmt17, personx, veri
(alias veri776), folder, synthetic. The docstrings of the `load_*` functions record the layout
facts each one relies on.
"""

from __future__ import annotations

import csv
import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from unreid.data.samples import DatasetLayoutError, ReidDataset, Sample

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp"})

SplitReport = dict[str, int]
"""Counts for one split: images (kept), junk (pid -1, dropped), distractors (pid 0, kept),
ignored_files (non-image or hidden entries), missing (listed but not on disk)."""

LoadReport = dict[str, SplitReport]
"""`SplitReport` per split name ("train", "query", "gallery")."""

REPORT_KEYS = ("images", "junk", "distractors", "ignored_files", "missing")

_MARKET_SPLITS = (
    ("train", "bounding_box_train"),
    ("query", "query"),
    ("gallery", "bounding_box_test"),
)
_MAX_LISTED = 5
_MAX_FOUND = 20

Loader = Callable[[Path], tuple[ReidDataset, LoadReport]]


# --------------------------------------------------------------------------- helpers


def is_image_file(name: str) -> bool:
    """Extension test shared by every loader, so all formats agree on what an image is."""
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def empty_split_report() -> SplitReport:
    return dict.fromkeys(REPORT_KEYS, 0)


def _absolute(root: str | Path) -> Path:
    # absolute() rather than resolve(): keep the user's symlinked paths in sample paths.
    return Path(root).expanduser().absolute()


def _found_in(folder: Path) -> str:
    """Listing used in error messages so the user sees what is there instead of a guess."""
    try:
        entries = sorted(e.name + ("/" if e.is_dir() else "") for e in os.scandir(folder))
    except OSError as exc:
        return f"<cannot list: {exc.strerror}>"
    shown = entries[:_MAX_FOUND]
    more = f", ... (+{len(entries) - _MAX_FOUND} more)" if len(entries) > _MAX_FOUND else ""
    return "[" + ", ".join(shown) + more + "]"


def _first(items: Sequence[str], limit: int = _MAX_LISTED) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items)} in total)" if len(items) > limit else "")


def _natural_key(text: str) -> list[int | str]:
    # cam2 before cam10: users number cameras without zero padding.
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


def _require_dir(root: Path, dataset: str) -> None:
    if not root.exists():
        raise DatasetLayoutError(f"{dataset}: root {root} does not exist")
    if not root.is_dir():
        raise DatasetLayoutError(f"{dataset}: root {root} is not a folder")


def _locate(root: Path, dataset: str, candidates: Sequence[str], markers: Sequence[str]) -> Path:
    """Accept both the dataset folder itself and a parent holding it under a known name."""
    _require_dir(root, dataset)
    if not candidates or any((root / m).exists() for m in markers):
        return root
    for candidate in candidates:
        base = root / candidate
        if base.is_dir() and any((base / m).exists() for m in markers):
            return base
    for candidate in candidates:
        if (root / candidate).is_dir():
            return root / candidate
    return root


def _camera_text(cameras: Mapping[int, int]) -> str:
    keys = sorted(cameras)
    if keys == list(range(keys[0], keys[-1] + 1)):
        return f"{keys[0]}..{keys[-1]}"
    return "one of " + ", ".join(str(k) for k in keys)


# --------------------------------------------------------------------------- Market-style


@dataclass(frozen=True)
class NameFormat:
    """How one dataset spells identity, camera and frame in an image file name.

    `pattern` is matched against the whole stem (name without extension) and must define
    groups `pid` and `cam`, optionally `frame`. `cameras` maps the camera number written in
    the name to the 0-based camera index; names with other numbers are layout errors.
    """

    dataset: str
    pattern: re.Pattern[str]
    example: str
    cameras: Mapping[int, int]
    expected: str

    def parse(self, path: Path) -> tuple[int, int, int | None] | None:
        """(pid, raw camera number, frame), or None when the name does not fit."""
        match = self.pattern.fullmatch(path.stem)
        if match is None:
            return None
        frame = match.groupdict().get("frame")
        return int(match["pid"]), int(match["cam"]), None if frame is None else int(frame)


def _camera_range(first: int, last: int) -> dict[int, int]:
    return {raw: raw - first for raw in range(first, last + 1)}


MARKET_FORMAT = NameFormat(
    dataset="market1501",
    pattern=re.compile(r"(?P<pid>-1|\d+)_c(?P<cam>\d+)s\d+_(?P<frame>\d+)_\d+"),
    example="0002_c1s1_000451_03.jpg",
    cameras=_camera_range(1, 6),
    expected="<pid>_c<camera>s<sequence>_<frame>_<box>.jpg",
)
DUKE_FORMAT = NameFormat(
    dataset="dukemtmcreid",
    pattern=re.compile(r"(?P<pid>-1|\d+)_c(?P<cam>\d+)_f(?P<frame>\d+)"),
    example="0005_c2_f0046985.jpg",
    cameras=_camera_range(1, 8),
    expected="<pid>_c<camera>_f<frame>.jpg",
)
VERI_FORMAT = NameFormat(
    dataset="veri",
    pattern=re.compile(r"(?P<pid>-1|\d+)_c(?P<cam>\d+)_(?P<frame>\d+)_\d+"),
    example="0001_c001_00016450_0.jpg",
    cameras=_camera_range(1, 20),
    expected="<vehicle id>_c<camera>_<frame>_<index>.jpg",
)
# Only pid and camera are fixed in these releases; the rest of the name varies, so no frame.
_PID_CAM_PATTERN = re.compile(r"(?P<pid>-1|\d+)_c(?P<cam>\d+)(?:\D.*)?")
MSMT17_MARKET_FORMAT = NameFormat(
    dataset="msmt17",
    pattern=_PID_CAM_PATTERN,
    example="0000_c1_0303morning_0015_0.jpg",
    cameras=_camera_range(1, 15),
    expected="<pid>_c<camera>[_<anything>].jpg",
)
PERSONX_FORMAT = NameFormat(
    dataset="personx",
    pattern=_PID_CAM_PATTERN,
    example="0001_c3s1_0001.jpg",
    cameras={3: 0, 4: 1, 8: 2, 10: 3, 11: 4, 12: 5},
    expected="<pid>_c<camera>[<anything>].jpg",
)
# Our generator writes Market names but may use more than Market's six cameras.
SYNTHETIC_FORMAT = NameFormat(
    dataset="synthetic",
    pattern=MARKET_FORMAT.pattern,
    example=MARKET_FORMAT.example,
    cameras=_camera_range(1, 99),
    expected=MARKET_FORMAT.expected,
)


def scan_image_folder(folder: str | Path, fmt: NameFormat) -> tuple[list[Sample], SplitReport]:
    """Parse every image in one flat split folder (Market-style naming).

    pid -1 is junk (dropped, counted); pid 0 is a distractor (kept, counted). Hidden entries,
    sub-folders and non-image files are counted as ignored. Badly named images and unknown
    cameras are collected and raised together so one run shows every problem.
    """
    folder = _absolute(folder)
    if not folder.is_dir():
        raise DatasetLayoutError(f"{fmt.dataset}: expected folder {folder} does not exist")
    report = empty_split_report()
    samples: list[Sample] = []
    bad_names: list[str] = []
    bad_cameras: list[str] = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.name.startswith(".") or not entry.is_file() or not is_image_file(entry.name):
            report["ignored_files"] += 1
            continue
        path = folder / entry.name
        parsed = fmt.parse(path)
        if parsed is None:
            bad_names.append(str(path))
            continue
        pid, raw_camera, frame = parsed
        if pid == -1:
            report["junk"] += 1
            continue
        if raw_camera not in fmt.cameras:
            bad_cameras.append(f"{path} (c{raw_camera})")
            continue
        if pid == 0:
            report["distractors"] += 1
        samples.append(Sample(str(path), fmt.cameras[raw_camera], pid, frame))
    if bad_names:
        raise DatasetLayoutError(
            f"{fmt.dataset}: {len(bad_names)} image file(s) in {folder} do not match the "
            f"expected name pattern {fmt.expected} (e.g. {fmt.example}): {_first(bad_names)}"
        )
    if bad_cameras:
        raise DatasetLayoutError(
            f"{fmt.dataset}: {len(bad_cameras)} image(s) in {folder} have a camera outside "
            f"{_camera_text(fmt.cameras)}: {_first(bad_cameras)}"
        )
    if not samples:
        raise DatasetLayoutError(
            f"{fmt.dataset}: no usable images in {folder} ({report['junk']} junk dropped, "
            f"{report['ignored_files']} non-image entries ignored); expected files named like "
            f"{fmt.example}"
        )
    report["images"] = len(samples)
    return samples, report


def _load_market_style(
    root: Path,
    fmt: NameFormat,
    candidates: Sequence[str],
    split_dirs: Sequence[tuple[str, str]] = _MARKET_SPLITS,
) -> tuple[ReidDataset, LoadReport]:
    markers = [sub for _, sub in split_dirs]
    base = _locate(root, fmt.dataset, candidates, markers)
    looked_for = candidates if base == root else ()
    return _load_market_dirs(base, fmt, looked_for, split_dirs)


def _load_market_dirs(
    base: Path,
    fmt: NameFormat,
    looked_for: Sequence[str] = (),
    split_dirs: Sequence[tuple[str, str]] = _MARKET_SPLITS,
) -> tuple[ReidDataset, LoadReport]:
    """One flat folder per split; `split_dirs` maps train/query/gallery to folder names."""
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
                f"found in {base}: {_found_in(base)}{also}"
            )
        splits[split], report[split] = scan_image_folder(folder, fmt)
    dataset = ReidDataset(
        fmt.dataset, str(base), splits["train"], splits["query"], splits["gallery"]
    )
    return dataset, report


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
    return _load_market_style(_absolute(root), MARKET_FORMAT, candidates)


def load_dukemtmcreid(root: str | Path) -> tuple[ReidDataset, LoadReport]:
    """DukeMTMC-reID.

    Same three folders as Market-1501; names like `0005_c2_f0046985.jpg` = pid 5, camera c2
    (of 1..8, stored 0-based), frame 46985. `root` may be the dataset folder or a parent
    holding `DukeMTMC-reID/`, `dukemtmcreid/DukeMTMC-reID/` or `dukemtmcreid/`.
    """
    candidates = ("DukeMTMC-reID", "dukemtmcreid/DukeMTMC-reID", "dukemtmcreid")
    return _load_market_style(_absolute(root), DUKE_FORMAT, candidates)


def load_personx(root: str | Path) -> tuple[ReidDataset, LoadReport]:
    """PersonX (the subset used by SpCL / Cluster Contrast / OpenUnReID).

    Layout: bounding_box_train/, query/, bounding_box_test/ under `PersonX/` (SpCL, Cluster
    Contrast) or `personx/subset1/` (OpenUnReID). Names start `<pid>_c<camera>`; only pid and
    camera are read (no frame). The subset uses the raw cameras 3, 4, 8, 10, 11, 12, which the
    reference loaders remap to 1..6; we store them 0-based: 3->0, 4->1, 8->2, 10->3, 11->4,
    12->5. Any other camera number is a layout error.
    """
    candidates = ("PersonX", "personx/PersonX", "subset1", "personx/subset1", "personx")
    return _load_market_style(_absolute(root), PERSONX_FORMAT, candidates)


_VERI_SPLITS = (("train", "image_train"), ("query", "image_query"), ("gallery", "image_test"))


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
    return _load_market_style(_absolute(root), VERI_FORMAT, candidates, _VERI_SPLITS)


def load_synthetic(root: str | Path) -> tuple[ReidDataset, LoadReport]:
    """Our synthetic generator's output: Market-1501 names and folders directly under `root`.

    No sub-folder search (the generator's output folder is the dataset) and cameras up to
    c99, since the generator is not limited to Market's six.
    """
    root = _absolute(root)
    _require_dir(root, SYNTHETIC_FORMAT.dataset)
    return _load_market_dirs(root, SYNTHETIC_FORMAT)


# --------------------------------------------------------------------------- MSMT17

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
    if any(sub in names for _, sub in _MARKET_SPLITS):
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
    if not re.fullmatch(r"-?\d+", pid_text) or int(pid_text) < -1:
        raise bad(f"pid {pid_text!r} is not a non-negative integer")
    if not is_image_file(rel):
        raise bad(f"{rel!r} is not an image path ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    parts = Path(rel).stem.split("_")
    if len(parts) < 3 or not parts[2].isdigit():
        raise bad("file name has no camera as its third '_' field")
    camera = int(parts[2])
    if not 1 <= camera <= 15:
        raise bad(f"camera {camera} is outside 1..15")
    frame = int(parts[4]) if len(parts) > 4 and parts[4].isdigit() else None
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
            f"found in {base}: {_found_in(base)}"
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
                    f"found in {base}: {_found_in(base)}"
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
            f"are not on disk: {_first(missing)}"
        )
    for split, samples in splits.items():
        if not samples:
            raise DatasetLayoutError(f"msmt17: the {split} lists under {base} list no images")
    dataset = ReidDataset("msmt17", str(base), splits["train"], splits["query"], splits["gallery"])
    return dataset, report


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
    root = _absolute(root)
    _require_dir(root, "msmt17")
    for base in (root, *(root / c for c in _MSMT_CANDIDATES)):
        if not base.is_dir():
            continue
        form = _msmt_form(base)
        if form == "lists":
            return _load_msmt_lists(base)
        if form == "market":
            return _load_market_dirs(base, MSMT17_MARKET_FORMAT)
    raise DatasetLayoutError(
        f"msmt17: no MSMT17 layout found under {root} (also tried "
        f"{', '.join(c + '/' for c in _MSMT_CANDIDATES)}); expected one of {_MSMT_LAYOUTS}; "
        f"found in {root}: {_found_in(root)}"
    )


# --------------------------------------------------------------------------- custom folder

_FOLDER_LAYOUT = "<root>/<camera>/<image> (one sub-folder per camera) or a CSV file path,camera"


def _camera_indices(labels: Iterable[str]) -> dict[str, int]:
    return {label: i for i, label in enumerate(sorted(set(labels), key=_natural_key))}


def _raise_missing(dataset: str, source: Path, missing: list[str]) -> None:
    if missing:
        raise DatasetLayoutError(
            f"{dataset}: {len(missing)} image(s) named in {source} are not on disk: "
            f"{_first(missing)}"
        )


def _load_camera_folders(root: Path) -> tuple[ReidDataset, LoadReport]:
    report = empty_split_report()
    root_images: list[str] = []
    per_camera: dict[str, list[Path]] = {}
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if entry.name.startswith("."):
            report["ignored_files"] += 1
        elif entry.is_dir():
            images: list[Path] = []
            for dirpath, dirnames, filenames in os.walk(entry.path):
                dirnames[:] = [d for d in dirnames if not d.startswith(".")]
                for name in filenames:
                    if is_image_file(name) and not name.startswith("."):
                        images.append(Path(dirpath) / name)
                    else:
                        report["ignored_files"] += 1
            if images:
                per_camera[entry.name] = images
            else:
                report["ignored_files"] += 1  # an empty folder is not a camera
        elif is_image_file(entry.name):
            root_images.append(entry.name)
        else:
            report["ignored_files"] += 1
    if root_images:
        raise DatasetLayoutError(
            f"folder: {len(root_images)} image(s) lie directly in {root} "
            f"({_first(root_images)}), so their camera is unknown; expected {_FOLDER_LAYOUT}"
        )
    if not per_camera:
        raise DatasetLayoutError(
            f"folder: no images found under {root}; expected {_FOLDER_LAYOUT}; "
            f"found in {root}: {_found_in(root)}"
        )
    cameras = _camera_indices(per_camera)
    logger.info("folder: camera folders -> camera index %s", cameras)
    samples = [
        Sample(str(path), cameras[label]) for label, paths in per_camera.items() for path in paths
    ]
    samples.sort(key=lambda s: s.path)
    report["images"] = len(samples)
    return ReidDataset("folder", str(root), samples), {"train": report}


def _load_camera_csv(csv_path: Path) -> tuple[ReidDataset, LoadReport]:
    report = empty_split_report()
    rows: list[tuple[Path, str]] = []
    seen: dict[str, int] = {}
    header_done = False
    with open(csv_path, encoding="utf-8", newline="") as handle:
        for index, row in enumerate(csv.reader(handle)):
            number = index + 1
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != 2:
                raise DatasetLayoutError(
                    f"folder: {csv_path}:{number}: expected 2 columns (path,camera), found "
                    f"{len(row)} in {row!r}"
                )
            path_text, camera = row[0].strip(), row[1].strip()
            first_row, header_done = not header_done, True
            if first_row and not is_image_file(path_text):
                continue  # header row: a first row whose path is not an image
            if not is_image_file(path_text):
                raise DatasetLayoutError(
                    f"folder: {csv_path}:{number}: {path_text!r} is not an image path "
                    f"({', '.join(sorted(IMAGE_EXTENSIONS))})"
                )
            if not camera:
                raise DatasetLayoutError(f"folder: {csv_path}:{number}: empty camera label")
            path = Path(path_text).expanduser()
            path = path if path.is_absolute() else csv_path.parent / path
            if str(path) in seen:
                raise DatasetLayoutError(
                    f"folder: {csv_path}:{number}: {path} already listed on line {seen[str(path)]}"
                )
            seen[str(path)] = number
            rows.append((path, camera))
    if not rows:
        raise DatasetLayoutError(
            f"folder: {csv_path} lists no images; expected rows path,camera "
            f"(e.g. cam1/000123.jpg,cam1), header optional"
        )
    missing = [str(p) for p, _ in rows if not p.is_file()]
    report["missing"] = len(missing)
    _raise_missing("folder", csv_path, missing)
    cameras = _camera_indices(c for _, c in rows)
    logger.info("folder: CSV camera labels -> camera index %s", cameras)
    samples = sorted((Sample(str(p), cameras[c]) for p, c in rows), key=lambda s: s.path)
    report["images"] = len(samples)
    return ReidDataset("folder", str(csv_path), samples), {"train": report}


def load_folder(root: str | Path) -> tuple[ReidDataset, LoadReport]:
    """Unlabeled custom data: the form a user's own camera crops usually take.

    Either a folder with one sub-folder per camera (`root/<camera>/**/<image>`, searched
    recursively so per-tracklet sub-folders work), or `root` is a CSV file of `path,camera`
    rows (header optional; a first row whose path is not an image is taken as the header;
    relative paths are resolved against the CSV's folder). Camera names or labels are mapped
    to 0..C-1 in natural sort order (cam2 before cam10). pid is None and there is no test
    split. Hidden entries, non-image files and empty camera folders are counted as ignored.
    """
    root = _absolute(root)
    if root.is_file():
        return _load_camera_csv(root)
    _require_dir(root, "folder")
    return _load_camera_folders(root)


# --------------------------------------------------------------------------- registry

_REGISTRY: dict[str, Loader] = {
    "market1501": load_market1501,
    "dukemtmcreid": load_dukemtmcreid,
    "msmt17": load_msmt17,
    "personx": load_personx,
    "veri": load_veri,
    "veri776": load_veri,
    "folder": load_folder,
    "synthetic": load_synthetic,
}


def available_datasets() -> list[str]:
    return sorted(_REGISTRY)


def _loader(name: str) -> Loader:
    key = name.strip().lower()
    if key not in _REGISTRY:
        raise ValueError(
            f"unknown dataset {name!r}; known datasets: {', '.join(available_datasets())}"
        )
    return _REGISTRY[key]


def load_dataset_with_report(name: str, root: str | Path) -> tuple[ReidDataset, LoadReport]:
    """Load by registry name and return what was dropped, for callers that record it."""
    return _loader(name)(Path(root))


def format_report(dataset: ReidDataset, report: LoadReport) -> str:
    """One line: kept images per split plus every non-zero drop/ignore count."""
    labels = {
        "junk": "junk dropped",
        "distractors": "distractors kept",
        "ignored_files": "non-image entries ignored",
        "missing": "missing",
    }
    parts = []
    for split, counts in report.items():
        extras = [f"{counts[k]} {label}" for k, label in labels.items() if counts.get(k)]
        detail = f" ({', '.join(extras)})" if extras else ""
        parts.append(f"{split} {counts['images']} images{detail}")
    return f"{dataset.name} from {dataset.root}: " + "; ".join(parts)


def load_dataset(name: str, root: str | Path) -> ReidDataset:
    """Load by registry name, logging one summary line with the drop/ignore counts."""
    dataset, report = load_dataset_with_report(name, root)
    logger.info(format_report(dataset, report))
    return dataset
