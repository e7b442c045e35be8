"""Which images a command works on, and the camera each was seen by.

`unreid extract` and `search` take a folder (recursive) or a CSV of paths; both
check every image decodes first, as training does (`readable_images`).

A model with a camera embedding needs each image's camera index (0..C-1, as its
training set numbered the cameras). A folder says nothing about cameras, so they
come from a CSV whose header names a `camera_index` column, or one `--camera N`
for every image the list gives none; with neither, the command stops and says so
(a guessed camera would change the features without any sign of it).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from unreid.data.datasets import IMAGE_EXTENSIONS, is_image_file

if TYPE_CHECKING:
    from unreid.inference import ReidEmbedder

__all__ = [
    "CAMERA_COLUMN",
    "ImageList",
    "image_cameras",
    "list_images",
    "read_image_list",
    "readable_images",
    "skipped_line",
]

CAMERA_COLUMN = "camera_index"


@dataclass(frozen=True)
class ImageList:
    """Image files and, when a CSV lists them, their camera indices (None: not given)."""

    files: list[Path]
    cameras: list[int | None] | None = None


def list_images(source: str | Path) -> list[Path]:
    """The image files `read_image_list` finds."""
    return read_image_list(source).files


def read_image_list(source: str | Path) -> ImageList:
    """The images of a folder (recursive, sorted) or of a CSV whose first column is a path.

    CSV paths may be relative to the CSV's folder; a first row that is not an image path
    is a header. A header column named `camera_index` gives each row's camera index (an
    empty cell: none). Listed files that are missing are an error naming them.
    """
    source = Path(source)
    if source.is_dir():
        found = sorted(
            Path(dirpath) / name
            for dirpath, dirnames, names in os.walk(source)
            if not any(part.startswith(".") for part in Path(dirpath).relative_to(source).parts)
            for name in names
            if is_image_file(name) and not name.startswith(".")
        )
        if not found:
            raise FileNotFoundError(
                f"{source}: no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) in this folder"
            )
        return ImageList([p.resolve() for p in found])
    if source.is_file() and source.suffix.lower() == ".csv":
        return _csv_images(source)
    if source.exists():
        raise ValueError(f"{source}: expected a folder of images or a .csv file of image paths")
    raise FileNotFoundError(f"{source} does not exist (expected a folder of images or a .csv)")


def _csv_images(path: Path) -> ImageList:
    out: list[Path] = []
    cameras: list[int | None] = []
    column: int | None = None
    with open(path, encoding="utf-8", newline="") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            cell = row[0].strip() if row else ""
            if not cell:
                continue
            if not is_image_file(cell):
                if number == 1:  # header
                    names = [c.strip().lower() for c in row]
                    column = names.index(CAMERA_COLUMN) if CAMERA_COLUMN in names else None
                    continue
                raise ValueError(f"{path}:{number}: {cell!r} is not an image path")
            p = Path(cell).expanduser()
            out.append((p if p.is_absolute() else path.parent / p).resolve())
            if column is not None:
                cameras.append(_camera_cell(row, column, f"{path}:{number}"))
    if not out:
        raise ValueError(f"{path}: lists no image paths (expected one path per row, column 1)")
    missing = [str(p) for p in out if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{path}: {len(missing)} listed image(s) are not on disk: {', '.join(missing[:5])}"
        )
    return ImageList(out, cameras if column is not None else None)


def _camera_cell(row: list[str], column: int, where: str) -> int | None:
    text = row[column].strip() if column < len(row) else ""
    if not text:
        return None
    if not text.isascii() or not text.isdigit():
        raise ValueError(
            f"{where}: {CAMERA_COLUMN} {text!r} is not a camera index (an integer >= 0, "
            "the camera's number in the model's training set)"
        )
    return int(text)


def readable_images(
    listing: ImageList, policy: str = "error", what: str = "images"
) -> tuple[ImageList, list[tuple[str, str]]]:
    """The listed images that decode, and (path, reason) for those that do not.

    The same check and policies as training's `data.bad_images`: every file is decoded
    up front, so a bad file is found with all the others at once (not one per try,
    at the first batch that holds it); `error` refuses the list naming every one,
    `skip` leaves them out and the caller names them.
    """
    from unreid.data.image_check import BadImagesError, check_images
    from unreid.data.samples import Sample

    samples = [Sample(str(f), 0) for f in listing.files]
    try:
        found = check_images(samples, policy=policy, workers=4)
    except BadImagesError as err:
        lines = "\n".join(f"  {path}: {reason}" for path, reason in err.bad)
        raise ValueError(
            f"{what}: {len(err.bad)} image(s) cannot be decoded (--bad-images skip leaves "
            f"them out):\n{lines}"
        ) from None
    kept = {s.path for s in found.kept}
    keep = [i for i, f in enumerate(listing.files) if str(f) in kept]
    if not keep:
        raise ValueError(f"{what}: none of its {len(listing.files)} image(s) decodes")
    cameras = None if listing.cameras is None else [listing.cameras[i] for i in keep]
    return ImageList([listing.files[i] for i in keep], cameras), found.bad


def skipped_line(what: str, bad: list[tuple[str, str]]) -> str:
    """One line naming every image `--bad-images skip` left out, and why."""
    named = "; ".join(f"{path}: {reason}" for path, reason in bad)
    return f"{what}: skipped {len(bad)} unreadable image(s) (--bad-images skip): {named}"


def image_cameras(
    embedder: ReidEmbedder,
    count: int,
    listed: list[int | None] | None = None,
    default: int | None = None,
    what: str = "embedding",
) -> list[int] | None:
    """The camera index of each of `count` images: the listed one, else `default`.

    None for a model without a camera embedding (it ignores cameras). For one with it,
    an image left without a camera is an error saying how to give one.
    """
    n = embedder.num_cameras
    if not n:
        return None
    ids = listed if listed is not None else [None] * count
    resolved = [default if c is None else c for c in ids]
    lacking = sum(c is None for c in resolved)
    if lacking:
        raise ValueError(
            f"{embedder.source} has a camera embedding ({n} training cameras): {what} needs "
            f"each image's camera index (0..{n - 1}) and {lacking} of {count} image(s) have "
            f"none; list them in a CSV with a '{CAMERA_COLUMN}' column or give --camera N"
        )
    return [int(c) for c in resolved if c is not None]
