"""What every dataset loader shares: what counts as an image, the load report, Market-style
name parsing and the wording of layout errors.

Loaders read names and list files only; they never decode images, so loading a 100k-image
dataset is a directory walk, not a data pass. Junk images and stray files are expected in the
public releases, so they are counted rather than fatal; anything that means the layout is not
what we think it is (a badly named image, an unknown camera, a listed file that is not on disk)
raises `DatasetLayoutError` naming the dataset, the path and what was expected.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from unreid.data.samples import DatasetLayoutError, Sample

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})  # what Pillow reads

SplitReport = dict[str, int]
"""Counts for one split: images (kept), junk (pid -1, dropped), distractors (pid 0, kept),
ignored_files (non-image or hidden entries), missing (listed but not on disk)."""

LoadReport = dict[str, SplitReport]
"""`SplitReport` per split name ("train", "query", "gallery")."""

REPORT_KEYS = ("images", "junk", "distractors", "ignored_files", "missing")

_MAX_LISTED = 5
_MAX_FOUND = 20


def is_image_file(name: str) -> bool:
    """Extension test shared by every loader, so all formats agree on what an image is."""
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def empty_split_report() -> SplitReport:
    return dict.fromkeys(REPORT_KEYS, 0)


def absolute_root(root: str | Path) -> Path:
    """absolute() rather than resolve(): keep the user's symlinked paths in sample paths."""
    return Path(root).expanduser().absolute()


def found_in(folder: Path) -> str:
    """Listing used in error messages so the user sees what is there instead of a guess."""
    try:
        entries = sorted(e.name + ("/" if e.is_dir() else "") for e in os.scandir(folder))
    except OSError as exc:
        return f"<cannot list: {exc.strerror}>"
    shown = entries[:_MAX_FOUND]
    more = f", ... (+{len(entries) - _MAX_FOUND} more)" if len(entries) > _MAX_FOUND else ""
    return "[" + ", ".join(shown) + more + "]"


def first_items(items: Sequence[str], limit: int = _MAX_LISTED) -> str:
    """The first few offenders and the total, so one error shows the scale of a problem."""
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items)} in total)" if len(items) > limit else "")


def require_dir(root: Path, dataset: str) -> None:
    if not root.exists():
        raise DatasetLayoutError(f"{dataset}: root {root} does not exist")
    if not root.is_dir():
        raise DatasetLayoutError(f"{dataset}: root {root} is not a folder")


def locate(root: Path, dataset: str, candidates: Sequence[str], markers: Sequence[str]) -> Path:
    """Accept both the dataset folder itself and a parent holding it under a known name."""
    require_dir(root, dataset)
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


def camera_range(first: int, last: int) -> dict[int, int]:
    """Raw camera numbers first..last mapped to 0-based indices."""
    return {raw: raw - first for raw in range(first, last + 1)}


# Only pid and camera are fixed in some releases; the rest of the name varies, so no frame.
PID_CAM_PATTERN = re.compile(r"(?P<pid>-1|\d+)_c(?P<cam>\d+)(?:\D.*)?")


def scan_image_folder(folder: str | Path, fmt: NameFormat) -> tuple[list[Sample], SplitReport]:
    """Parse every image in one flat split folder (Market-style naming).

    pid -1 is junk (dropped, counted); pid 0 is a distractor (kept, counted). Hidden entries,
    sub-folders and non-image files are counted as ignored. Badly named images and unknown
    cameras are collected and raised together so one run shows every problem.
    """
    folder = absolute_root(folder)
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
            f"expected name pattern {fmt.expected} (e.g. {fmt.example}): {first_items(bad_names)}"
        )
    if bad_cameras:
        raise DatasetLayoutError(
            f"{fmt.dataset}: {len(bad_cameras)} image(s) in {folder} have a camera outside "
            f"{_camera_text(fmt.cameras)}: {first_items(bad_cameras)}"
        )
    if not samples:
        raise DatasetLayoutError(
            f"{fmt.dataset}: no usable images in {folder} ({report['junk']} junk dropped, "
            f"{report['ignored_files']} non-image entries ignored); expected files named like "
            f"{fmt.example}"
        )
    report["images"] = len(samples)
    return samples, report
