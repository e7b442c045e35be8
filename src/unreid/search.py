"""Features of one's own images on disk, and a gallery index that survives between searches.

Embedding a gallery is the slow part of a search; ranking it is not. So the
gallery's features are kept (in `unreid extract`'s format) beside a faiss index,
with a fingerprint of what produced them: the gallery's files (path, size,
modification time) and the checkpoint's. A search whose fingerprint differs
rebuilds the index rather than ranking with stale features.

A model with a camera embedding needs each image's camera index (0..C-1, as its
training set numbered the cameras). A folder says nothing about cameras, so they
come from a CSV whose header names a `camera_index` column, or one `--camera N`
for every image the list gives none; with neither, the search stops and says so
(a guessed camera would change the features without any sign of it).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unreid.data.datasets import IMAGE_EXTENSIONS, is_image_file
from unreid.inference import ReidEmbedder

__all__ = [
    "CAMERA_COLUMN",
    "FEATURE_FORMATS",
    "FeatureSet",
    "GalleryIndex",
    "Hit",
    "ImageList",
    "image_cameras",
    "list_images",
    "load_features",
    "read_image_list",
    "readable_images",
    "save_features",
    "skipped_line",
]

FEATURE_FORMATS = (".npy", ".safetensors")
INDEX_FILE, FEATURES_FILE = "gallery.faiss", "features.npy"
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


@dataclass
class FeatureSet:
    """(N, D) float32 features, the N files they belong to, and what produced them."""

    files: list[str]
    features: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.features.ndim != 2 or self.features.shape[0] != len(self.files):
            raise ValueError(
                f"features must be (N, D) with N = {len(self.files)} files, "
                f"found shape {self.features.shape}"
            )


def files_list_path(npy: Path) -> Path:
    """The file list that goes with `features.npy`: `features.json`."""
    return npy.with_suffix(".json")


def save_features(out: str | Path, fs: FeatureSet) -> list[Path]:
    """`.npy` + a `.json` file list beside it, or one `.safetensors` with the list inside."""
    out = Path(out)
    if out.suffix not in FEATURE_FORMATS:
        raise ValueError(
            f"{out}: feature file must end in {' or '.join(FEATURE_FORMATS)}, found {out.suffix!r}"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    features = np.ascontiguousarray(fs.features, dtype=np.float32)
    if out.suffix == ".npy":
        np.save(out, features)
        listing = files_list_path(out)
        listing.write_text(json.dumps({"files": fs.files, **fs.meta}, indent=1))
        return [out, listing]
    import torch
    from safetensors.torch import save_file

    metadata = {"files": json.dumps(fs.files), "meta": json.dumps(fs.meta)}
    save_file({"features": torch.from_numpy(features)}, str(out), metadata=metadata)
    return [out]


def load_features(path: str | Path) -> FeatureSet:
    """What `save_features` wrote."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"feature file {path} does not exist")
    if path.suffix == ".npy":
        listing = files_list_path(path)
        if not listing.is_file():
            raise FileNotFoundError(f"{path}: its file list {listing} is missing")
        meta = json.loads(listing.read_text())
        if not isinstance(meta, dict) or "files" not in meta:
            raise ValueError(f"{listing}: expected a JSON object with a 'files' list")
        files = meta.pop("files")
        return FeatureSet(files, np.load(path), meta)
    if path.suffix == ".safetensors":
        from safetensors import safe_open
        from safetensors.numpy import load_file

        with safe_open(str(path), framework="np") as f:
            header = f.metadata() or {}
        if "files" not in header:
            raise ValueError(f"{path}: no 'files' entry in its header; not an unreid feature file")
        tensors = load_file(str(path))
        if "features" not in tensors:
            raise ValueError(f"{path}: no 'features' tensor, found {sorted(tensors)}")
        meta = json.loads(header.get("meta", "{}"))
        return FeatureSet(json.loads(header["files"]), tensors["features"], meta)
    raise ValueError(f"{path}: expected a {' or '.join(FEATURE_FORMATS)} feature file")


def extract_images(
    embedder: ReidEmbedder,
    files: list[Path],
    batch_size: int = 64,
    progress: bool = True,
    cameras: list[int] | None = None,
) -> FeatureSet:
    """Embed `files` (seen by `cameras`, if the model wants them); the metadata says which
    checkpoint, preprocessing and cameras made them."""
    feats = embedder.embed(files, cameras, batch_size=batch_size, progress=progress).numpy()
    meta: dict[str, Any] = {
        "checkpoint": str(Path(embedder.source).resolve()),
        "feature_dim": int(feats.shape[1]),
        "preprocessing": embedder.preprocessing.as_dict(),
    }
    if cameras is not None:
        meta["cameras"] = list(cameras)
    return FeatureSet([str(f) for f in files], feats, meta)


def fingerprint(
    files: list[Path], checkpoint: str | Path, cameras: list[int] | None = None
) -> dict[str, Any]:
    """What must not change for stored gallery features to stay valid (cameras included)."""
    digest = hashlib.sha256()
    for i, f in enumerate(files):
        st = f.stat()
        camera = "" if cameras is None else f"\0{cameras[i]}"
        digest.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}{camera}\n".encode())
    ck = Path(checkpoint).resolve()
    st = ck.stat()
    return {
        "gallery": digest.hexdigest(),
        "images": len(files),
        "checkpoint": {"path": str(ck), "size": st.st_size, "mtime_ns": st.st_mtime_ns},
    }


@dataclass(frozen=True)
class Hit:
    rank: int
    path: str
    score: float  # cosine similarity of unit features


class GalleryIndex:
    """A gallery's features and their exact inner-product faiss index (unit vectors: cosine)."""

    def __init__(self, features: FeatureSet, index: Any) -> None:
        self.features = features
        self.index = index

    @classmethod
    def build(cls, features: FeatureSet) -> GalleryIndex:
        import faiss

        index = faiss.IndexFlatIP(features.features.shape[1])
        index.add(np.ascontiguousarray(features.features, dtype=np.float32))
        return cls(features, index)

    @classmethod
    def open(
        cls,
        gallery: str | Path,
        embedder: ReidEmbedder,
        index_dir: str | Path,
        batch_size: int = 64,
        progress: bool = True,
        camera: int | None = None,
        bad_images: str = "error",
    ) -> tuple[GalleryIndex, bool]:
        """The stored index if its fingerprint matches, else a fresh one (saved); True if built.

        `camera`: the camera index of gallery images the list gives none (a camera-embedding
        model only; see the module doc). `bad_images`: `error` or `skip` for gallery files
        that do not decode (checked when the index is built; the skipped ones are kept in
        its metadata, `skipped`).
        """
        import faiss

        index_dir = Path(index_dir)
        listing = read_image_list(gallery)
        files = listing.files
        cameras = image_cameras(embedder, len(files), listing.cameras, camera, "the gallery")
        want = fingerprint(files, embedder.source, cameras)
        want["bad_images"] = bad_images
        stored = index_dir / FEATURES_FILE
        if stored.is_file() and (index_dir / INDEX_FILE).is_file():
            try:
                fs = load_features(stored)
            except (OSError, ValueError):
                fs = None  # unreadable: rebuilt below
            if fs is not None and fs.meta.get("fingerprint") == want:
                return cls(fs, faiss.read_index(str(index_dir / INDEX_FILE))), False
        good, bad = readable_images(listing, bad_images, f"search --gallery {gallery}")
        if good.files != files:
            files = good.files
            cameras = image_cameras(embedder, len(files), good.cameras, camera, "the gallery")
        fs = extract_images(embedder, files, batch_size, progress, cameras)
        fs.meta["fingerprint"] = want
        fs.meta["skipped"] = [list(b) for b in bad]
        fs.meta["gallery"] = str(Path(gallery).resolve())
        built = cls.build(fs)
        index_dir.mkdir(parents=True, exist_ok=True)
        save_features(stored, fs)
        faiss.write_index(built.index, str(index_dir / INDEX_FILE))
        return built, True

    def search(self, queries: np.ndarray, top: int = 10) -> list[list[Hit]]:
        """The `top` most similar gallery images of each query row, best first."""
        if top < 1:
            raise ValueError(f"top must be >= 1, found {top}")
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = min(top, len(self.features.files))
        scores, idx = self.index.search(q, k)
        return [
            [
                Hit(rank + 1, self.features.files[j], float(s))
                for rank, (j, s) in enumerate(zip(row_idx, row_s, strict=True))
            ]
            for row_idx, row_s in zip(idx, scores, strict=True)
        ]
