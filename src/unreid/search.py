"""Features of one's own images on disk, and a gallery index that survives between searches.

Embedding a gallery is the slow part of a search; ranking it is not. So the
gallery's features are kept (in `unreid extract`'s format) beside a faiss index,
with a fingerprint of what produced them: the gallery's files (path, size,
modification time) and the checkpoint's. A search whose fingerprint differs
rebuilds the index rather than ranking with stale features.

Which images, and their cameras, come from `image_lists.py` (re-exported here).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unreid.image_lists import (
    CAMERA_COLUMN,
    ImageList,
    image_cameras,
    list_images,
    read_image_list,
    readable_images,
    skipped_line,
)
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

    from unreid.checkpoint import save_safetensors

    metadata = {"files": json.dumps(fs.files), "meta": json.dumps(fs.meta)}
    save_safetensors(out, {"features": torch.from_numpy(features)}, metadata=metadata)
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

    def search(
        self,
        queries: np.ndarray,
        top: int = 10,
        exclude: Sequence[str | Path | None] | None = None,
    ) -> list[list[Hit]]:
        """The `top` most similar gallery images of each query row, best first.

        `exclude[i]`, when given, is query i's own file: a gallery entry at the same
        resolved path is left out of its hits (a query found in the gallery would
        otherwise always come first, at similarity 1, telling nothing), and the ranks
        count the images that remain. Fewer than `top` hits come back only where the
        gallery has fewer images to give.
        """
        if top < 1:
            raise ValueError(f"top must be >= 1, found {top}")
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        skip = [None] * len(q) if exclude is None else list(exclude)
        if len(skip) != len(q):
            raise ValueError(
                f"exclude: expected one path (or None) per query ({len(q)}), found {len(skip)}"
            )
        n = len(self.features.files)
        scores, idx = self.index.search(q, min(top, n))
        out = []
        for row, (own, row_idx, row_s) in enumerate(zip(skip, idx, scores, strict=True)):
            pairs = list(zip(row_idx.tolist(), row_s.tolist(), strict=True))
            own = None if own is None else Path(own).resolve()
            if own is not None and any(self._is(j, own) for j, _ in pairs):
                pairs = self._without(q[row : row + 1], top, own)
            out.append(
                [
                    Hit(rank + 1, self.features.files[j], float(s))
                    for rank, (j, s) in enumerate(pairs)
                ]
            )
        return out

    def _is(self, j: int, own: Path) -> bool:
        return j >= 0 and Path(self.features.files[j]).resolve() == own

    def _without(self, query: np.ndarray, top: int, own: Path) -> list[tuple[int, float]]:
        """One query's best `top` (index, score) pairs that are not the file `own`."""
        n = len(self.features.files)
        k = min(top + 1, n)
        while True:
            scores, idx = self.index.search(query, k)
            pairs = [
                (j, s)
                for j, s in zip(idx[0].tolist(), scores[0].tolist(), strict=True)
                if j >= 0 and not self._is(j, own)
            ]
            if len(pairs) >= top or k == n:  # a file listed twice may take two slots
                return pairs[:top]
            k = min(2 * k, n)
