"""A procedural pedestrian dataset in Market-1501 layout, for showing learning offline.

No real re-ID dataset is reachable in a sandbox or CI, so the demo trains on
this one. It is built to be hard for a colour histogram and easy for a small
CNN: people share a small palette (some are palette swaps of each other), so
identity lives in the spatial layout of colours, while every camera changes the
global colour statistics (colour cast, gain, gamma, saturation, its own
background), which is all a histogram sees.

Every random draw comes from a generator seeded by (seed, purpose, ids...), so a
file's content depends only on the config and its own name, never on the order
of generation: the same config gives byte-identical files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .synthetic_draw import VIEWS, Identity, Pose, draw_person, palette_swap, sample_identity

__all__ = ["SynthConfig", "generate_synthetic", "is_generated", "META_FILE"]

META_FILE = "synthetic.json"
_SPLIT_DIRS = ("bounding_box_train", "query", "bounding_box_test")
# Stream tags keep the generators for different purposes independent.
_IDENTITY, _TWIN, _LAYOUT, _CAMERA, _IMAGE, _DISTRACTOR, _SCENERY = range(1, 8)
_PANORAMA = 8  # background panorama width, in crop widths


Job = tuple[str, int, int, int]  # (split dir, pid, camera, index)


@dataclass
class SynthConfig:
    """Size and difficulty of a synthetic set; every field is a plain CLI-friendly value.

    Camera knobs are spreads: each camera draws its own value from them once, so
    raising one makes cameras disagree more (harder cross-camera matching).
    """

    ids: int = 200  # first half train, second half test, as in Market-1501
    cameras: int = 6  # 2..9 (the file name holds one camera digit)
    images_per_id_camera: tuple[int, int] = (1, 5)  # inclusive range per (id, camera)
    distractors: int = 200  # pid-0000 gallery images of people who are never queried
    height: int = 128
    width: int = 64
    seed: int = 0
    jpeg_quality: tuple[int, int] = (75, 95)  # inclusive range, drawn per image
    twin_fraction: float = 0.5  # fraction of identity pairs that are top/bottom palette swaps
    colour_cast: float = 0.04  # per-channel gain spread: gains in [1 - c, 1 + c]
    lighting: float = 0.06  # brightness gain spread (log scale) across cameras
    gamma: float = 0.04  # gamma in [1 - g, 1 + g]
    saturation: float = 0.05  # colour saturation factor in [1 - s, 1 + s]
    scenery_saturation: float = 0.25  # 0 = grey walls and floors; higher = colourful clutter
    blur: float = 0.8  # maximum per-camera Gaussian blur radius, output pixels
    noise: float = 4.0  # maximum per-camera sensor noise std, 0..255 scale
    occlusion: float = 0.3  # probability that an image is partly occluded
    # Domain style, the same for every camera (for domain-adaptation sets): a colour
    # temperature shift (red gain 1 + w, blue gain 1 - w) and a log-brightness offset.
    warmth: float = 0.0
    exposure: float = 0.0
    render_scale: int = 2  # draw at this multiple, then downsample (antialiasing)

    def validate(self) -> None:
        lo, hi = self.images_per_id_camera
        qlo, qhi = self.jpeg_quality
        checks = {
            "ids must be >= 2": self.ids >= 2,
            "cameras must be in 2..9": 2 <= self.cameras <= 9,
            "images_per_id_camera must be 1 <= lo <= hi": 1 <= lo <= hi,
            "distractors must be >= 0": self.distractors >= 0,
            "height and width must be >= 16": min(self.height, self.width) >= 16,
            "jpeg_quality must be 1 <= lo <= hi <= 100": 1 <= qlo <= qhi <= 100,
            "render_scale must be >= 1": self.render_scale >= 1,
            "occlusion and twin_fraction must be in [0, 1]": 0 <= self.occlusion <= 1
            and 0 <= self.twin_fraction <= 1,
            "warmth must be in (-1, 1)": -1 < self.warmth < 1,
        }
        bad = [msg for msg, ok in checks.items() if not ok]
        if bad:
            raise ValueError("invalid SynthConfig: " + "; ".join(bad))


def _rng(cfg: SynthConfig, *key: int) -> np.random.Generator:
    return np.random.default_rng([cfg.seed, *key])


@dataclass(eq=False)
class _Camera:
    views: np.ndarray
    gain: float
    gamma: float
    cast: np.ndarray
    saturation: float
    blur: float
    noise: float
    scale: float
    panorama: Image.Image
    clutter: list[tuple[int, int, int]] = field(default_factory=list)


def _muted(
    rng: np.random.Generator, lo: float = 50, hi: float = 210, sat: tuple[float, float] = (0.2, 0.8)
) -> tuple[int, int, int]:
    c = rng.uniform(lo, hi, 3)
    c = c.mean() + (c - c.mean()) * rng.uniform(*sat)
    return tuple(int(v) for v in np.clip(c, 0, 255))


def _scenery(cfg: SynthConfig) -> list[tuple[int, int, int]]:
    """Wall and object colours shared by all cameras, so a background does not name its camera."""
    rng = _rng(cfg, _SCENERY)
    return [_muted(rng, 90, 170, (0.0, cfg.scenery_saturation)) for _ in range(12)]


def _camera(cfg: SynthConfig, cam: int) -> _Camera:
    rng = _rng(cfg, _CAMERA, cam)
    s = cfg.render_scale
    w, h = cfg.width * s, cfg.height * s
    scenery = _scenery(cfg)

    def pick() -> tuple[int, int, int]:
        return scenery[int(rng.integers(len(scenery)))]

    pano = Image.new("RGB", (w * _PANORAMA, h), pick())
    draw = ImageDraw.Draw(pano)
    x = 0.0
    while x < pano.width:  # wall segments: each crop sees its own mix
        seg = rng.uniform(0.3, 1.2) * w
        draw.rectangle([x, 0, x + seg, h], fill=pick())
        x += seg
    horizon = int(h * rng.uniform(0.6, 0.85))
    x = 0.0
    while x < pano.width:  # floor segments (pavement, mats, tiles)
        seg = rng.uniform(0.5, 2.0) * w
        draw.rectangle([x, horizon, x + seg, h], fill=pick())
        x += seg
    clutter = [pick() for _ in range(4)]
    for _ in range(int(rng.integers(3, 5) * _PANORAMA)):  # windows, doors, posters, pillars
        x0, y0 = rng.uniform(0, pano.width), rng.uniform(0, horizon * 0.9)
        bw, bh = rng.uniform(0.1, 0.6) * w, rng.uniform(0.1, 0.6) * h
        c = clutter[int(rng.integers(len(clutter)))]
        draw.rectangle([x0, y0, x0 + bw, min(y0 + bh, horizon)], fill=c)
    tile = rng.uniform(0.08, 0.2) * h
    for y in np.arange(horizon + tile / 2, h, tile):
        draw.line([(0, y), (pano.width, y)], fill=(70, 70, 70), width=max(1, s))
    return _Camera(
        views=rng.dirichlet([1.5, 1.5, 1.5]),
        gain=float(np.exp(rng.uniform(-cfg.lighting, cfg.lighting))),
        gamma=float(rng.uniform(1 - cfg.gamma, 1 + cfg.gamma)),
        cast=rng.uniform(1 - cfg.colour_cast, 1 + cfg.colour_cast, 3).astype(np.float32),
        saturation=float(rng.uniform(1 - cfg.saturation, 1 + cfg.saturation)),
        blur=float(rng.uniform(0, cfg.blur)),
        noise=float(rng.uniform(0.25, 1.0) * cfg.noise),
        scale=float(rng.uniform(0.8, 0.95)),
        panorama=pano,
        clutter=clutter,
    )


def _identity(cfg: SynthConfig, pid: int) -> Identity:
    """Identity of `pid`; the odd member of a twin pair is its partner's palette swap."""
    n_train = cfg.ids // 2
    start = 1 if pid <= n_train else n_train + 1
    i = pid - start
    base = start + (i // 2) * 2
    if i % 2 == 1 and _rng(cfg, _TWIN, base).random() < cfg.twin_fraction:
        return palette_swap(sample_identity(_rng(cfg, _IDENTITY, base)))
    return sample_identity(_rng(cfg, _IDENTITY, pid))


def _occlude(canvas: Image.Image, cam: _Camera, rng: np.random.Generator, size: float) -> None:
    """Cover roughly 10-30% of the box with scenery or a passer-by's fragment."""
    w, h = canvas.size
    if rng.random() < 0.5:
        draw = ImageDraw.Draw(canvas)
        c = cam.clutter[int(rng.integers(len(cam.clutter)))]
        frac = rng.uniform(0.1, 0.3)
        if rng.random() < 0.5:
            draw.rectangle([0, h * (1 - frac), w, h], fill=c)
        else:
            x = 0 if rng.random() < 0.5 else w * (1 - frac)
            draw.rectangle([x, 0, x + w * frac, h], fill=c)
        return
    other = sample_identity(rng)
    side = 1 if rng.random() < 0.5 else -1
    pose = Pose(
        view=VIEWS[int(rng.integers(3))],
        facing=side,
        cx=w / 2 + side * w * rng.uniform(0.62, 0.8),
        feet_y=h * rng.uniform(0.95, 1.05),
        size=size * rng.uniform(0.95, 1.1),
        phase=float(rng.uniform(0, 2 * np.pi)),
    )
    draw_person(canvas, other, pose)


def _render(
    cfg: SynthConfig, person: Identity, cam: _Camera, rng: np.random.Generator
) -> Image.Image:
    """One camera image of `person`: background crop, person, occluder, optics, sensor."""
    s = cfg.render_scale
    w, h = cfg.width * s, cfg.height * s
    x0 = int(rng.integers(0, cam.panorama.width - w + 1))
    canvas = cam.panorama.crop((x0, 0, x0 + w, h))
    if rng.random() < 0.5:
        canvas = canvas.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    size = h * cam.scale * person.height * rng.uniform(0.94, 1.06)
    pose = Pose(
        view=VIEWS[int(rng.choice(3, p=cam.views))],
        facing=1 if rng.random() < 0.5 else -1,
        cx=w * (0.5 + rng.uniform(-0.07, 0.07)),
        feet_y=(h + size) / 2 + h * rng.uniform(-0.03, 0.03),
        size=size,
        phase=float(rng.uniform(0, 2 * np.pi)),
    )
    draw_person(canvas, person, pose)
    if rng.random() < cfg.occlusion:
        _occlude(canvas, cam, rng, size)
    if s > 1:
        canvas = canvas.reduce(s)
    radius = cam.blur * rng.uniform(0.7, 1.3)
    if radius > 0.15:
        canvas = canvas.filter(ImageFilter.GaussianBlur(radius))
    x = np.asarray(canvas, dtype=np.float32) / 255.0
    gain = cam.gain * np.exp(rng.normal(0, 0.08))
    x = np.power(x, cam.gamma) * (gain * cam.cast)
    if cfg.warmth or cfg.exposure:  # domain style (skipped at 0: default sets keep their bytes)
        w = cfg.warmth
        x = x * (np.exp(cfg.exposure) * np.array([1 + w, 1.0, 1 - w], dtype=np.float32))
    grey = x.mean(axis=2, keepdims=True)
    x = grey + (x - grey) * cam.saturation
    x = x * 255.0 + rng.normal(0, cam.noise, x.shape).astype(np.float32)
    return Image.fromarray(np.clip(x + 0.5, 0, 255).astype(np.uint8))


def _layout(cfg: SynthConfig, pid: int) -> dict[int, int]:
    """Which cameras saw `pid` and how many images each took (at least two cameras)."""
    rng = _rng(cfg, _LAYOUT, pid)
    k = int(rng.integers(2, cfg.cameras + 1))
    cams = sorted(int(c) for c in rng.choice(cfg.cameras, k, replace=False))
    lo, hi = cfg.images_per_id_camera
    return {c: int(rng.integers(lo, hi + 1)) for c in cams}


def _query_cameras(counts: dict[int, int]) -> list[int]:
    """Cameras that give one query each, so that every query keeps a match in another camera.

    A camera with two or more images keeps one in the gallery after giving a
    query. With two such cameras every camera can give a query; otherwise one
    anchor camera (the rich one, or the first) gives none and keeps its images.
    """
    rich = [c for c, n in counts.items() if n >= 2]
    if len(rich) >= 2:
        return sorted(counts)
    anchor = rich[0] if rich else min(counts)
    return sorted(c for c in counts if c != anchor)


def plan_jobs(cfg: SynthConfig) -> list[Job]:
    """(split dir, pid, camera, index) for every image; index doubles as the frame number."""
    n_train = cfg.ids // 2
    jobs: list[tuple[str, int, int, int]] = []
    for pid in range(1, cfg.ids + 1):
        counts = _layout(cfg, pid)
        queries = set() if pid <= n_train else set(_query_cameras(counts))
        for cam, n in counts.items():
            for k in range(n):
                if pid <= n_train:
                    split = "bounding_box_train"
                else:
                    split = "query" if (cam in queries and k == 0) else "bounding_box_test"
                jobs.append((split, pid, cam, k))
    for j in range(cfg.distractors):
        cam = int(_rng(cfg, _DISTRACTOR, j).integers(cfg.cameras))
        jobs.append(("bounding_box_test", 0, cam, j))
    return jobs


def _prepare(out: Path) -> None:
    """Refuse to mix with a dataset we did not write; clear one we did."""
    ours = (out / META_FILE).exists()
    for d in _SPLIT_DIRS:
        folder = out / d
        folder.mkdir(parents=True, exist_ok=True)
        old = sorted(folder.glob("*.jpg"))
        if old and not ours:
            raise FileExistsError(f"{folder} holds images not written by the synthetic generator")
        for p in old:
            p.unlink()


def _write_meta(out: Path, cfg: SynthConfig, counts: dict[str, int], complete: bool) -> None:
    tmp = out / (META_FILE + ".tmp")
    meta = {"generator": "unreid.synthetic", "version": 1, "config": asdict(cfg)}
    meta.update(counts=counts, complete=complete)
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, out / META_FILE)


def is_generated(out_dir: str | Path, cfg: SynthConfig) -> bool:
    """True if `out_dir` holds a finished set made from exactly this config (cache check)."""
    path = Path(out_dir) / META_FILE
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    want = json.loads(json.dumps(asdict(cfg)))
    return meta.get("complete") is True and meta.get("config") == want


def write_images(
    out: Path, cfg: SynthConfig, jobs: Sequence[Job], cameras: Sequence[Any], progress: bool = False
) -> int:
    """Render and save `jobs` (from `plan_jobs`); any subset gives the same bytes per file.

    Each image draws from its own seeded stream, and an identity is drawn once from
    its own seed, so the serial generator and parallel workers write identical files.
    """
    identities: dict[int, Identity] = {}
    qlo, qhi = cfg.jpeg_quality
    it: Iterable[Job] = jobs
    if progress:
        from tqdm import tqdm

        it = tqdm(jobs, desc="synthetic", unit="img")
    for split, pid, cam, k in it:
        if pid == 0:
            rng = _rng(cfg, _DISTRACTOR, k)
            rng.integers(cfg.cameras)  # the camera draw made in plan_jobs
            person = sample_identity(rng)
        else:
            if pid not in identities:
                identities[pid] = _identity(cfg, pid)
            person = identities[pid]
            rng = _rng(cfg, _IMAGE, pid, cam, k)
        img = _render(cfg, person, cameras[cam], rng)
        name = f"{pid:04d}_c{cam + 1}s1_{k + 1:06d}_00.jpg"
        quality = int(rng.integers(qlo, qhi + 1))
        img.save(Path(out) / split / name, format="JPEG", quality=quality, optimize=False)
    return len(jobs)


def build_cameras(cfg: SynthConfig) -> list[Any]:
    return [_camera(cfg, c) for c in range(cfg.cameras)]


def start_output(out_dir: str | Path, cfg: SynthConfig) -> tuple[Path, list[Job]]:
    """The folder prepared and marked incomplete, and the images to write."""
    cfg.validate()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _prepare(out)
    jobs = plan_jobs(cfg)
    _write_meta(out, cfg, {}, complete=False)
    return out, jobs


def finish_output(out: Path, cfg: SynthConfig, jobs: Sequence[Job]) -> dict[str, Any]:
    """Mark the folder complete (only after the last image) and return its counts."""
    n_train = cfg.ids // 2
    counts: dict[str, Any] = {
        "train_ids": n_train,
        "test_ids": cfg.ids - n_train,
        "cameras": cfg.cameras,
        "train_images": sum(j[0] == "bounding_box_train" for j in jobs),
        "query_images": sum(j[0] == "query" for j in jobs),
        "gallery_images": sum(j[0] == "bounding_box_test" for j in jobs),
        "distractors": cfg.distractors,
    }
    _write_meta(out, cfg, counts, complete=True)
    return counts


def generate_synthetic(
    out_dir: str | Path, cfg: SynthConfig, progress: bool = False
) -> dict[str, Any]:
    """Write the set under `out_dir` (Market-1501 folders) and return its counts.

    `synthetic.json` is written first with `complete: false` and rewritten with
    `complete: true` only after the last image, so an interrupted run is never
    mistaken for a finished one.
    """
    out, jobs = start_output(out_dir, cfg)
    write_images(out, cfg, jobs, build_cameras(cfg), progress)
    return finish_output(out, cfg, jobs)
