"""Features of one's own images on disk, and a gallery index that survives between searches.

Embedding a gallery is the slow part of a search; ranking it is not. So the
gallery's features are kept (in `unreid extract`'s format) beside a faiss index,
with a fingerprint of what produced them: the gallery's files (path, size,
modification time) and the checkpoint's. A search whose fingerprint differs
rebuilds the index rather than ranking with stale features.
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
    "FEATURE_FORMATS",
    "FeatureSet",
    "GalleryIndex",
    "Hit",
    "list_images",
    "load_features",
    "save_features",
]

FEATURE_FORMATS = (".npy", ".safetensors")
INDEX_FILE, FEATURES_FILE = "gallery.faiss", "features.npy"


def list_images(source: str | Path) -> list[Path]:
    """The images of a folder (recursive, sorted) or of a CSV whose first column is a path.

    CSV paths may be relative to the CSV's folder; a first row that is not an image path
    is a header. Listed files that are missing are an error naming them.
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
        return [p.resolve() for p in found]
    if source.is_file() and source.suffix.lower() == ".csv":
        return _csv_images(source)
    if source.exists():
        raise ValueError(f"{source}: expected a folder of images or a .csv file of image paths")
    raise FileNotFoundError(f"{source} does not exist (expected a folder of images or a .csv)")


def _csv_images(path: Path) -> list[Path]:
    out: list[Path] = []
    with open(path, encoding="utf-8", newline="") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            cell = row[0].strip() if row else ""
            if not cell:
                continue
            if not is_image_file(cell):
                if number == 1:
                    continue  # header
                raise ValueError(f"{path}:{number}: {cell!r} is not an image path")
            p = Path(cell).expanduser()
            out.append((p if p.is_absolute() else path.parent / p).resolve())
    if not out:
        raise ValueError(f"{path}: lists no image paths (expected one path per row, column 1)")
    missing = [str(p) for p in out if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{path}: {len(missing)} listed image(s) are not on disk: {', '.join(missing[:5])}"
        )
    return out


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
    embedder: ReidEmbedder, files: list[Path], batch_size: int = 64, progress: bool = True
) -> FeatureSet:
    """Embed `files`; the metadata says which checkpoint and preprocessing made them."""
    feats = embedder.embed(files, batch_size=batch_size, progress=progress).numpy()
    meta = {
        "checkpoint": str(Path(embedder.source).resolve()),
        "feature_dim": int(feats.shape[1]),
        "preprocessing": embedder.preprocessing.as_dict(),
    }
    return FeatureSet([str(f) for f in files], feats, meta)


def fingerprint(files: list[Path], checkpoint: str | Path) -> dict[str, Any]:
    """What must not change for stored gallery features to stay valid."""
    digest = hashlib.sha256()
    for f in files:
        st = f.stat()
        digest.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
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
    ) -> tuple[GalleryIndex, bool]:
        """The stored index if its fingerprint matches, else a fresh one (saved); True if built."""
        import faiss

        index_dir = Path(index_dir)
        files = list_images(gallery)
        want = fingerprint(files, embedder.source)
        stored = index_dir / FEATURES_FILE
        if stored.is_file() and (index_dir / INDEX_FILE).is_file():
            try:
                fs = load_features(stored)
            except (OSError, ValueError):
                fs = None  # unreadable: rebuilt below
            if fs is not None and fs.meta.get("fingerprint") == want:
                return cls(fs, faiss.read_index(str(index_dir / INDEX_FILE))), False
        fs = extract_images(embedder, files, batch_size, progress)
        fs.meta["fingerprint"] = want
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
