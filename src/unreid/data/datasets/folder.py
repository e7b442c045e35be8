"""A user's own unlabelled camera crops: one sub-folder per camera, or a CSV of path,camera."""

from __future__ import annotations

import csv
import io
import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path

from unreid.data.datasets.layout import (
    IMAGE_EXTENSIONS,
    LoadReport,
    absolute_root,
    empty_split_report,
    first_items,
    found_in,
    is_image_file,
    require_dir,
)
from unreid.data.datasets.registry import DATASETS
from unreid.data.samples import DatasetLayoutError, ReidDataset, Sample

# The package's logger, as before the split, so a filter on unreid.data.datasets still applies.
logger = logging.getLogger(__package__)

_FOLDER_LAYOUT = "<root>/<camera>/<image> (one sub-folder per camera) or a CSV file path,camera"


def _natural_key(text: str) -> list[int | str]:
    # cam2 before cam10: users number cameras without zero padding.
    # ASCII digits only: str.isdigit() also accepts characters such as '²' that int() rejects
    parts = re.split(r"([0-9]+)", text)
    return [int(part) if part.isascii() and part.isdigit() else part.lower() for part in parts]


def _camera_indices(labels: Iterable[str]) -> dict[str, int]:
    return {label: i for i, label in enumerate(sorted(set(labels), key=_natural_key))}


def _raise_missing(dataset: str, source: Path, missing: list[str]) -> None:
    if missing:
        raise DatasetLayoutError(
            f"{dataset}: {len(missing)} image(s) named in {source} are not on disk: "
            f"{first_items(missing)}"
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
            f"({first_items(root_images)}), so their camera is unknown; expected {_FOLDER_LAYOUT}"
        )
    if not per_camera:
        raise DatasetLayoutError(
            f"folder: no images found under {root}; expected {_FOLDER_LAYOUT}; "
            f"found in {root}: {found_in(root)}"
        )
    cameras = _camera_indices(per_camera)
    logger.info("folder: camera folders -> camera index %s", cameras)
    samples = [
        Sample(str(path), cameras[label]) for label, paths in per_camera.items() for path in paths
    ]
    samples.sort(key=lambda s: s.path)
    report["images"] = len(samples)
    return ReidDataset("folder", str(root), samples, camera_names=list(cameras)), {"train": report}


def _load_camera_csv(csv_path: Path) -> tuple[ReidDataset, LoadReport]:
    report = empty_split_report()
    rows: list[tuple[Path, str]] = []
    seen: dict[str, int] = {}
    header_done = False
    try:
        text = csv_path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DatasetLayoutError(
            f"folder: {csv_path} is not UTF-8 text (byte {err.start}: {err.reason}); "
            "expected a CSV of path,camera"
        ) from None
    for index, row in enumerate(csv.reader(io.StringIO(text, newline=""))):
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
        try:
            path = Path(path_text).expanduser()
        except RuntimeError as err:  # '~user/...' for a user this machine does not have
            raise DatasetLayoutError(f"folder: {csv_path}:{number}: {path_text!r}: {err}") from None
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
    return ReidDataset("folder", str(csv_path), samples, camera_names=list(cameras)), {
        "train": report
    }


@DATASETS.register("folder")
def load_folder(root: str | Path) -> tuple[ReidDataset, LoadReport]:
    """Unlabeled custom data: the form a user's own camera crops usually take.

    Either a folder with one sub-folder per camera (`root/<camera>/**/<image>`, searched
    recursively so per-tracklet sub-folders work), or `root` is a CSV file of `path,camera`
    rows (header optional; a first row whose path is not an image is taken as the header;
    relative paths are resolved against the CSV's folder). Camera names or labels are mapped
    to 0..C-1 in natural sort order (cam2 before cam10) and kept as `camera_names`, which the
    report shows. pid is None and there is no test split. Hidden entries, non-image files
    and empty camera folders are counted as ignored.
    """
    root = absolute_root(root)
    if root.is_file():
        return _load_camera_csv(root)
    require_dir(root, "folder")
    return _load_camera_folders(root)
