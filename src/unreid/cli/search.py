"""`unreid search`: the closest gallery images to query images, with a reusable gallery index.

The gallery's features and faiss index are kept in `--index` (default: a cache
folder per gallery and checkpoint) and rebuilt only when the gallery's files or
the checkpoint change, so repeated searches embed only the queries. A model with
a camera embedding needs camera indices: the gallery CSV's `camera_index` column or
`--camera`, and `--query-camera` (default: `--camera`) for the queries.

A query that is itself a gallery file (the same resolved path) is left out of
its own results: it would always rank first at similarity 1 and say nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

from unreid.cli.common import cache_dir


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="find a query's closest images in a gallery folder")
    p.add_argument("--checkpoint", required=True, help="best.pth / last.pth or a .safetensors")
    p.add_argument("--gallery", required=True, help="folder (recursive) or CSV of image paths")
    p.add_argument("--query", required=True, nargs="+", help="one or more query images")
    p.add_argument("--top", type=int, default=10)
    p.add_argument(
        "--camera",
        type=int,
        help="camera index (0..C-1) of gallery images the list gives none; only a model "
        "with a camera embedding reads it",
    )
    p.add_argument(
        "--query-camera", type=int, help="camera index of the queries (default: --camera)"
    )
    p.add_argument(
        "--bad-images",
        choices=("error", "skip"),
        default="error",
        help="a gallery file that does not decode: stop naming all (error), or leave it out "
        "and name it (skip); as training's data.bad_images",
    )
    p.add_argument("--html", help="also write the results as a self-contained HTML page")
    p.add_argument("--index", help="where the gallery index lives (default: a cache folder)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", help="cpu, cuda, cuda:1 (default: the GPU if there is one)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def default_index_dir(gallery: str, checkpoint: str) -> Path:
    key = f"{Path(gallery).resolve()}\n{Path(checkpoint).resolve()}"
    return cache_dir() / "search" / hashlib.sha256(key.encode()).hexdigest()[:16]


def run(args: argparse.Namespace) -> int:
    from unreid.image_lists import image_cameras, skipped_line
    from unreid.inference import load_model
    from unreid.search import GalleryIndex

    if args.top < 1:
        raise ValueError(f"search --top must be >= 1, found {args.top}")
    missing = [q for q in args.query if not Path(q).is_file()]
    if missing:
        raise FileNotFoundError(f"search --query: no such image(s): {', '.join(missing)}")
    embedder = load_model(args.checkpoint, device=args.device)
    query_camera = args.camera if args.query_camera is None else args.query_camera
    query_cameras = image_cameras(embedder, len(args.query), None, query_camera, "the query")
    index_dir = Path(args.index) if args.index else default_index_dir(args.gallery, args.checkpoint)
    started = time.perf_counter()
    index, built = GalleryIndex.open(
        args.gallery,
        embedder,
        index_dir,
        args.batch_size,
        not args.no_progress,
        args.camera,
        args.bad_images,
    )
    skipped = index.features.meta.get("skipped")
    if skipped:
        print(skipped_line(f"gallery {args.gallery}", [tuple(b) for b in skipped]))
    what = "built" if built else "reused"
    n = len(index.features.files)
    print(
        f"gallery index {what}: {n} images in {index_dir} ({time.perf_counter() - started:.2f} s)"
    )
    started = time.perf_counter()
    feats = embedder.embed(args.query, query_cameras, batch_size=args.batch_size).numpy()
    hits = index.search(feats, args.top, exclude=args.query)
    per_query = (time.perf_counter() - started) / len(args.query)
    if any(len(found) < args.top for found in hits):  # said, not cut silently
        own = " and a query's own file among them is left out" if args.top <= n else ""
        print(f"--top {args.top}: the gallery has only {n} images{own}", file=sys.stderr)
    for query, found in zip(args.query, hits, strict=True):
        print(f"\nquery {query}")
        for h in found:
            print(f"  {h.rank:3d}  {h.score:.4f}  {h.path}")
    print(f"\n{1000 * per_query:.1f} ms per query (embedding + search)")
    if args.html:
        from unreid.report.search_page import write_search_page

        out = write_search_page(args.html, args.query, hits, args.gallery, args.checkpoint)
        print(f"wrote {out}")
    return 0
