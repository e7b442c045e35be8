"""`unreid export`: ONNX (dynamic batch, checked against torch) or weights-only safetensors."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a checkpoint to ONNX or safetensors")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--format", required=True, choices=["onnx", "safetensors"])
    p.add_argument("--out", help="output file (default: the checkpoint's path, new suffix)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument(
        "--no-check", action="store_true", help="skip comparing the export with torch's output"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from unreid.export import export_model, onnx_features
    from unreid.inference import load_model
    from unreid.models.vit import camera_ids

    options = {"opset": args.opset} if args.format == "onnx" else {}
    written = export_model(args.checkpoint, args.format, args.out, **options)
    for path in written:
        size = path.stat().st_size
        shown = f"{size / 2**20:.1f} MiB" if size >= 2**20 else f"{size / 2**10:.1f} KiB"
        print(f"wrote {path} ({shown}, {size} bytes)")
    if args.no_check:
        return 0
    reference = load_model(args.checkpoint, device="cpu")
    pre = reference.preprocessing
    batch = torch.randn(3, 3, pre.height, pre.width, generator=torch.Generator().manual_seed(0))
    # a camera-embedding model is checked on several of its cameras
    cams = torch.arange(3) % reference.num_cameras if reference.num_cameras else None
    with torch.no_grad(), camera_ids(reference.model, cams):
        want = reference.model(batch).numpy()
    if args.format == "onnx":
        got = onnx_features(written[0], batch, cams)
    else:
        exported = load_model(written[0], device="cpu").model
        with torch.no_grad(), camera_ids(exported, cams):
            got = exported(batch).numpy()
    diff = float(abs(got - want).max())
    print(f"check: max |export - torch| = {diff:.2e} on 3 random inputs")
    if diff > 1e-4:
        raise RuntimeError(f"export {written[0]} differs from the checkpoint by {diff:.2e} > 1e-4")
    return 0
