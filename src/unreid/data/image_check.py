"""Decode every image once before training, so a bad file stops the run at load time.

Loaders only read names; a zero-byte, truncated or mislabelled file would
otherwise surface as a crash in a data-loader worker hours into training, one
file at a time. Here every file is fully decoded (a header check such as PIL's
`verify()` passes a truncated JPEG) and all bad files are reported together.

The decoder is PIL's `load()`, the one training reads images with, so the scan
refuses exactly the files training would fail to decode. torchvision's `decode_image`
was about 1.4x faster on 96x48 JPEGs but is deprecated since torchvision 0.29,
has no BMP, and could disagree with the training reader. Threads decode in
parallel (PIL releases the GIL while decoding). Results are cached by path,
size and modification time, so a second scan of an unchanged dataset only
stats its files.
"""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from unreid.data.samples import Sample

__all__ = [
    "BAD_IMAGE_POLICIES",
    "BadImagesError",
    "ImageCheck",
    "check_images",
    "decode_error",
    "median_size",
]

BAD_IMAGE_POLICIES = ("error", "skip")
"""`error`: refuse the dataset, naming every bad file; `skip`: train without them."""

CACHE_VERSION = 1
_CHUNK = 64
_UNREADABLE = "cannot read: "

log = logging.getLogger(__name__)


class BadImagesError(ValueError):
    """Images that cannot be decoded; `bad` holds (path, reason) for every one."""

    def __init__(self, bad: Sequence[tuple[str, str]]) -> None:
        self.bad = list(bad)
        lines = "\n".join(f"  {path}: {reason}" for path, reason in self.bad)
        super().__init__(
            f"{len(self.bad)} image(s) cannot be decoded (set data.bad_images=skip to train "
            f"without them):\n{lines}"
        )


@dataclass
class ImageCheck:
    """The samples that decode, in input order, and (path, reason) for those that do not."""

    kept: list[Sample]
    bad: list[tuple[str, str]]


def decode_error(path: str) -> str | None:
    """Why `path` cannot be decoded, or None when it decodes completely."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as err:
        return f"{_UNREADABLE}{err.strerror or err}"
    if not data:
        return "empty file (0 bytes)"
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
    except UnidentifiedImageError:
        return f"not a recognised image format (starts with {data[:8]!r})"
    except Exception as err:  # any decoder failure is the file's verdict, whatever its type
        return f"{type(err).__name__}: {err}"
    return None


def _unreadable(reason: str | None) -> bool:
    return reason is not None and reason.startswith(_UNREADABLE)


def _valid_entry(entry: object) -> bool:
    return (
        isinstance(entry, list)
        and len(entry) == 3
        and (entry[2] is None or isinstance(entry[2], str))
    )


def _signature(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _read_cache(cache_path: Path | None) -> dict[str, list]:
    if cache_path is None or not cache_path.is_file():
        return {}
    try:
        data = json.loads(cache_path.read_text(encoding="utf-8"))
        if data.get("version") == CACHE_VERSION and isinstance(data.get("files"), dict):
            return data["files"]
    except (OSError, ValueError, AttributeError) as err:
        log.warning("image check cache %s is unreadable (%s); scanning again", cache_path, err)
        return {}
    log.warning("image check cache %s has another format; scanning again", cache_path)
    return {}


def _write_cache(cache_path: Path, files: dict[str, list]) -> None:
    # write-then-rename, so an interrupted scan never leaves half a cache behind; a cache
    # that cannot be written only costs the next scan its speed, so it does not stop a run
    tmp = cache_path.with_name(f"{cache_path.name}.{os.getpid()}.tmp")
    try:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps({"version": CACHE_VERSION, "files": files}), encoding="utf-8")
        os.replace(tmp, cache_path)
    except OSError as err:
        log.warning("cannot write the image check cache %s (%s)", cache_path, err)


def _decode_chunk(paths: list[str]) -> list[str | None]:
    # look the decoder up at call time, so a test can count its calls
    return [decode_error(p) for p in paths]


def _decode_all(paths: list[str], workers: int, progress: bool) -> list[str | None]:
    """Verdicts in `paths` order; chunks amortise the pool's per-task cost over small crops."""
    chunks = [paths[i : i + _CHUNK] for i in range(0, len(paths), _CHUNK)]
    pool = ThreadPoolExecutor(max_workers=workers) if workers > 0 and len(chunks) > 1 else None
    results = pool.map(_decode_chunk, chunks) if pool is not None else map(_decode_chunk, chunks)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(paths), desc="checking images", unit="img", leave=False)
    out: list[str | None] = []
    try:
        for verdicts in results:
            out += verdicts
            if bar is not None:
                bar.update(len(verdicts))
    finally:
        if bar is not None:
            bar.close()
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return out


def check_images(
    samples: Sequence[Sample],
    *,
    policy: str = "error",
    cache_path: Path | None = None,
    workers: int = 4,
    progress: bool = False,
) -> ImageCheck:
    """Decode every sample's file (cached) and apply `policy` to those that fail.

    `policy="error"` raises `BadImagesError` naming every bad file and why;
    `"skip"` returns the good samples in their order and the bad (path, reason)
    list, which the caller reports (nothing is logged here, so it is said once). `workers` threads decode in parallel (0 = this thread). The cache,
    when given, maps path -> (size, mtime_ns, reason); entries of files not in
    this scan are kept, so train and test splits can share one cache file.
    """
    if policy not in BAD_IMAGE_POLICIES:
        raise ValueError(
            f"bad-image policy must be one of {', '.join(BAD_IMAGE_POLICIES)}, found {policy!r}"
        )
    if workers < 0:
        raise ValueError(f"workers must be >= 0, found {workers}")
    samples = list(samples)
    cache_path = None if cache_path is None else Path(cache_path)
    cache = _read_cache(cache_path)
    paths = list(dict.fromkeys(s.path for s in samples))
    verdicts: dict[str, str | None] = {}
    todo: list[str] = []
    signatures: dict[str, tuple[int, int]] = {}
    for path in paths:
        sig = _signature(path)
        if sig is None:
            verdicts[path] = f"{_UNREADABLE}no such file"
            continue
        signatures[path] = sig
        entry = cache.get(path)
        if _valid_entry(entry) and tuple(entry[:2]) == sig:
            verdicts[path] = entry[2]
        else:
            todo.append(path)
    for path, reason in zip(todo, _decode_all(todo, workers, progress), strict=True):
        verdicts[path] = reason
    # an unreadable file (permissions, I/O) may read next time without changing size or mtime
    fresh = {p: [*signatures[p], verdicts[p]] for p in todo if not _unreadable(verdicts[p])}
    if cache_path is not None and fresh:
        cache.update(fresh)
        _write_cache(cache_path, cache)
    bad = [(p, verdicts[p]) for p in paths if verdicts[p] is not None]
    if bad and policy == "error":
        raise BadImagesError(bad)
    return ImageCheck(kept=[s for s in samples if verdicts[s.path] is None], bad=bad)


def median_size(paths: Sequence[str], limit: int = 1000) -> tuple[int, int, int] | None:
    """(median height, median width, images measured) over up to `limit` of `paths`.

    Read from the file headers (no decoding) of images spread evenly over the list,
    so it costs milliseconds on any dataset. Each dimension's upper median on its
    own; None when no image opens.
    """
    spread = list(paths)[:: max(1, len(paths) // max(1, limit))][: max(1, limit)]
    heights, widths = [], []
    for path in spread:
        try:
            with Image.open(path) as img:
                width, height = img.size
        except (OSError, ValueError):
            continue  # the image check says why, where the policy asks it to
        heights.append(height)
        widths.append(width)
    if not heights:
        return None
    mid = len(heights) // 2
    return sorted(heights)[mid], sorted(widths)[mid], len(heights)
