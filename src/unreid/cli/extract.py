"""`unreid extract`: features of one's own images with a trained model, plus the file list."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("extract", help="embed a folder (or CSV) of images with a checkpoint")
    p.add_argument("--checkpoint", required=True, help="best.pth / last.pth or a .safetensors")
    p.add_argument("--images", required=True, help="folder (recursive) or CSV of image paths")
    p.add_argument(
        "--out",
        required=True,
        help="F.npy (+ F.json file list) or F.safetensors (file list in its header)",
    )
    p.add_argument(
        "--camera",
        type=int,
        help="camera index (0..C-1) of images the list gives none; only a model with a "
        "camera embedding reads it (a CSV may list each image's in a camera_index column)",
    )
    p.add_argument(
        "--bad-images",
        choices=("error", "skip"),
        default="error",
        help="an image that does not decode: stop naming all (error), or leave it out of the "
        "features and name it (skip); as training's data.bad_images",
    )
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", help="cpu, cuda, cuda:1 (default: the GPU if there is one)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from unreid.image_lists import image_cameras, read_image_list, readable_images, skipped_line
    from unreid.inference import load_model
    from unreid.search import extract_images, save_features

    listing, bad = readable_images(
        read_image_list(args.images), args.bad_images, f"extract --images {args.images}"
    )
    if bad:
        print(skipped_line(f"extract --images {args.images}", bad))
    files = listing.files
    embedder = load_model(args.checkpoint, device=args.device)
    cameras = image_cameras(embedder, len(files), listing.cameras, args.camera, "extract")
    features = extract_images(
        embedder, files, args.batch_size, progress=not args.no_progress, cameras=cameras
    )
    written = save_features(args.out, features)
    n, d = features.features.shape
    print(f"{n} images -> {d}-d features: {', '.join(str(p) for p in written)}")
    return 0
