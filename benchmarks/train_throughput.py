"""Training throughput: each speed-up of "one GPU trains like four" against the all-off baseline.

On a Market-sized synthetic set (12,936 training crops at 256×128, query and
gallery of the same size), ResNet-50, P×K batch 256 = 16 × 16, Cluster
Contrast's loss and memory update. Every configuration runs one epoch:

* extract: features of every training image (eval mode), images/s;
* cluster: DBSCAN on the k-reciprocal Jaccard distance of those features;
* train: `--iters` steps through the real loader (P×K sampler, workers, the
  augmentation), images/s measured after `--warmup` steps; the memory and the
  steps use the true identities, since the random-init features (no weights
  are downloaded) give no useful clusters;
* evaluate: query + gallery extracted with the per-image test transform, mAP.

Peak memory is the device's peak allocation on a GPU and the process's peak
RSS on a CPU (monotone over the run: later rows cannot show less). The
decoded cache is built once per configuration that uses it and reported as
`decode s` (a one-off per run, not per epoch).

`--arch` takes several networks (ResNets and the transformers of models/vit.py:
vit_tiny, vit_small, vit_base, clip_vit_b16, random init at --height x --width,
patch stride 16): every configuration runs once per arch on the same data and
batch, and each arch's step time (batch / train img/s) is printed against the
first arch's, configuration by configuration. `--baseline-only` skips "all on"
(the CPU comparison of architectures).

Rows: "baseline" = fp32 (TF32 off), channels-first, per-image PIL decode and
augmentation in loader workers, BatchNorm over the whole batch, eager, torch's
default Adam loop (not train.fused_optimizer's fused kernel); "all
on" = the switches given (defaults: every speed-up but compile); `--each`
adds one row per single switch on top of the baseline. `--no-device-augment`
with the decoded cache trains on the cached bytes unaugmented (the loader's
floor, not a recipe). fp16 on a CPU runs reference kernels (minutes per step):
use it on GPUs only.

    python benchmarks/train_throughput.py --data /tmp/unreid-bench            # GPU, full size
    python benchmarks/train_throughput.py --data /tmp/unreid-bench-small --small   # CPU check
    python benchmarks/train_throughput.py --data /tmp/unreid-bench --arch vit_small vit_base
    python benchmarks/train_throughput.py --data /tmp/unreid-bench-vit --arch resnet50 vit_small \
        --baseline-only --images 128 --eval-images 32 --batch-size 16 --num-instances 4 \
        --iters 4 --warmup 1   # CPU: ViT-S against ResNet-50 at 256x128
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import sys
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from unreid.data.datasets import load_dataset
from unreid.data.decoded_cache import CachedImages, DecodedCache
from unreid.data.device_augment import DeviceAugment, normalize_batch
from unreid.data.image_dataset import ImageDataset
from unreid.data.samplers import PKSampler
from unreid.data.synthetic import SynthConfig, is_generated
from unreid.data.synthetic_parallel import generate_synthetic
from unreid.data.transforms import test_transform, train_transform
from unreid.engine.evaluate import evaluate_samples
from unreid.methods import Batch, MethodContext, build_method
from unreid.methods.cluster_contrast import ClusterMemoryConfig
from unreid.models.bn_groups import bn_groups
from unreid.models.reid_model import build_model
from unreid.precision import Precision, prepare_model, set_tf32, to_device
from unreid.pseudo_labels.clusterers import make_pseudo_labels
from unreid.settings import ClusterConfig, ModelConfig

IMAGES_PER_ID = 12  # SynthConfig defaults: 2-6 cameras (mean 4) x 1-5 images (mean 3)


@dataclass(frozen=True)
class Switches:
    amp: str = "off"
    channels_last: bool = False
    device_augment: bool = False
    decoded_cache: bool = False
    bn_group_size: int = 0
    compile: bool = False
    tf32: bool = False
    fused_optimizer: bool = False  # torch's per-tensor Adam loop (CPU; foreach on CUDA)


BASELINE = Switches()


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    on = argparse.BooleanOptionalAction
    ap.add_argument("--data", required=True, help="cache folder of the synthetic sets")
    ap.add_argument("--small", action="store_true", help="CPU-sized: 512 images, 128x64, resnet18")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--images", type=int, help="training images (default 12936; small 512)")
    ap.add_argument(
        "--eval-images", type=int, help="cap on query + gallery (default all; small 96)"
    )
    ap.add_argument("--height", type=int)
    ap.add_argument("--width", type=int)
    ap.add_argument(
        "--arch", nargs="+", help="networks to compare (default resnet50; small resnet18)"
    )
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--num-instances", type=int)
    ap.add_argument("--iters", type=int, help="train steps in the epoch (default 200; small 6)")
    ap.add_argument("--warmup", type=int, help="steps before the img/s clock starts (20; small 2)")
    ap.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    ap.add_argument("--gen-workers", type=int, default=0, help="synthetic generator processes")
    ap.add_argument("--amp", default="auto", choices=["auto", "bf16", "fp16", "off"])
    ap.add_argument("--channels-last", action=on, default=True)
    ap.add_argument("--device-augment", action=on, default=True)
    ap.add_argument("--decoded-cache", action=on, default=True)
    ap.add_argument("--bn-group-size", type=int, help="images per BN group (default 64; small 8)")
    ap.add_argument("--compile", action=on, default=False)
    ap.add_argument("--tf32", action=on, default=True)
    ap.add_argument("--fused-optimizer", action=on, default=True)
    ap.add_argument("--each", action="store_true", help="also one row per single switch")
    ap.add_argument("--baseline-only", action="store_true", help="only the all-off row per arch")
    ap.add_argument("--json", help="also write the rows and the setting to this JSON file")
    args = ap.parse_args(argv)
    small = dict(images=512, eval_images=96, height=128, width=64, arch=["resnet18"], batch_size=32,
                 num_instances=4, iters=6, warmup=2, bn_group_size=8)  # fmt: skip
    full = dict(images=12936, eval_images=0, height=256, width=128, arch=["resnet50"],
                batch_size=256, num_instances=16, iters=200, warmup=20, bn_group_size=64)  # fmt: skip
    for key, value in (small if args.small else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def synthetic_set(
    data: str | Path, images: int, height: int, width: int
) -> tuple[Path, SynthConfig]:
    """The folder under `data` and the settings of the set that holds >= `images` training
    crops (gpu_check.py writes it with `unreid synth` before this script reads it)."""
    ids = 2 * math.ceil(images / IMAGES_PER_ID * 1.15)  # half train, with a margin
    cfg = SynthConfig(ids=ids, height=height, width=width, seed=0)
    return Path(data) / f"synthetic-{ids}ids-{height}x{width}", cfg  # one per size


def dataset(args: argparse.Namespace):
    """The synthetic set (generated once into --data) with exactly --images training crops."""
    root, cfg = synthetic_set(args.data, args.images, args.height, args.width)
    took = 0.0
    if not is_generated(root, cfg):
        started = time.perf_counter()
        generate_synthetic(root, cfg, workers=args.gen_workers, progress=True)
        took = time.perf_counter() - started
    ds = load_dataset("market1501", root)
    if len(ds.train) < args.images:
        sys.exit(f"the synthetic set has {len(ds.train)} training images, fewer than --images")
    query, gallery = ds.query, ds.gallery
    if args.eval_images:
        step_q = max(1, len(query) * 5 // args.eval_images)
        step_g = max(1, len(gallery) * 5 // (4 * args.eval_images))
        query, gallery = query[::step_q], gallery[::step_g]
    return ds.train[: args.images], query, gallery, took


def peak_memory_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 1e9
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # KiB on Linux


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def extract(runner, model, precision, loader, device, channels_last, cached) -> torch.Tensor:
    model.eval()
    out = []
    for images, _ in loader:
        x = to_device(images, device, channels_last)
        x = normalize_batch(x, channels_last) if cached else x
        out.append(precision.forward(runner, x).cpu())
    model.train()
    return torch.cat(out)


def run_config(name: str, sw: Switches, args, data, device, arch: str) -> dict[str, float]:
    train, query, gallery, _ = data
    h, w, b = args.height, args.width, args.batch_size
    torch.manual_seed(0)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    set_tf32(sw.tf32)
    precision = Precision.from_setting(sw.amp, device)
    model = build_model(ModelConfig(arch=arch, pretrained="none"), (h, w)).to(device)
    runner = prepare_model(model, sw.channels_last, sw.compile)
    row: dict[str, float] = {"decode s": 0.0}
    pin, workers = device.type == "cuda", args.workers
    loader_kw = dict(num_workers=workers, pin_memory=pin, prefetch_factor=4 if workers else None)
    cache = None
    if sw.decoded_cache:
        started = time.perf_counter()
        cache = DecodedCache.build(train, h, w, budget_gb=64, workers=max(workers, 1))
        row["decode s"] = time.perf_counter() - started
        extract_set = CachedImages(cache, train)
    else:
        extract_set = ImageDataset(train, test_transform(h, w))
    extract_loader = DataLoader(extract_set, batch_size=b, **loader_kw)
    eval_loader = DataLoader(ImageDataset(query + gallery, test_transform(h, w)), b, **loader_kw)
    groups = bn_groups(model, sw.bn_group_size, "first", args.num_instances)
    with groups if sw.bn_group_size < b else contextlib.nullcontext():
        # 1. extract (after one untimed batch: lazy initialisation, cuDNN plans, compilation)
        warm = torch.zeros((b, 3, h, w), device=device)
        extract(runner, model, precision, [(warm, None)], device, sw.channels_last, None)
        sync(device)
        started = time.perf_counter()
        feats = extract(runner, model, precision, extract_loader, device, sw.channels_last, cache)
        sync(device)
        row["extract s"] = time.perf_counter() - started
        row["extract img/s"] = len(train) / row["extract s"]
        # 2. cluster (timed; training uses the true identities, see the module doc)
        started = time.perf_counter()
        make_pseudo_labels("dbscan", feats, ClusterConfig(), seed=1, true_ids=None)
        row["cluster s"] = time.perf_counter() - started
        truth = make_pseudo_labels(
            "ground_truth", feats, ClusterConfig(), seed=1, true_ids=[s.pid for s in train]
        )
        # 3. train
        method = build_method(
            "cluster_contrast", ClusterMemoryConfig(), MethodContext(model.feature_dim)
        ).to(device)
        cameras = torch.tensor([s.camera for s in train])
        method.start_epoch(0, feats.to(device), truth, cameras)
        labels = torch.from_numpy(truth.labels.copy())
        sampler = PKSampler(labels.tolist(), cameras.tolist(), args.num_instances, b, args.iters)
        train_set = (
            CachedImages(cache, train) if cache else ImageDataset(train, train_transform(h, w))
        )
        loader = DataLoader(train_set, batch_sampler=sampler, **loader_kw)
        augment = DeviceAugment(h, w)
        gen = torch.Generator(device).manual_seed(0)
        fused = True if sw.fused_optimizer else None  # as train.fused_optimizer
        optimizer = torch.optim.Adam(model.parameters(), lr=3.5e-4, weight_decay=5e-4, fused=fused)
        sync(device)
        started = clock = time.perf_counter()
        for step, (images, indexes) in enumerate(loader):
            if step == args.warmup:
                sync(device)
                clock = time.perf_counter()
            x = to_device(images, device, sw.channels_last)
            if sw.device_augment and cache is not None:
                x = augment(x, gen, sw.channels_last)
            elif cache is not None:  # cached bytes without the device path: no augmentation
                x = normalize_batch(x, sw.channels_last)
            batch = Batch(precision.forward(runner, x), labels[indexes].to(device),
                          cameras[indexes].to(device), indexes.to(device))  # fmt: skip
            loss = sum(method.losses(batch).values())
            precision.backward_step(loss, optimizer)
            batch.features = batch.features.detach()
            method.update_memories(batch)
        sync(device)
        end = time.perf_counter()
        row["train s"] = end - started
        row["train img/s"] = (args.iters - args.warmup) * b / max(end - clock, 1e-9)
        # 4. evaluate
        started = time.perf_counter()
        both = extract(runner, model, precision, eval_loader, device, sw.channels_last, None)
        metrics = evaluate_samples(both[: len(query)], both[len(query) :], query, gallery)
        row["eval s"] = time.perf_counter() - started
    row["epoch s"] = sum(row[k] for k in ("extract s", "cluster s", "train s", "eval s"))
    row["mAP"] = float(metrics.mAP)
    row["peak GB"] = peak_memory_gb(device)
    print(f"  {arch} {name}: done in {row['epoch s']:.1f}s", file=sys.stderr, flush=True)
    return row


def describe(sw: Switches) -> str:
    changed = [f.name for f in fields(Switches) if getattr(sw, f.name) != getattr(BASELINE, f.name)]
    return ", ".join(f"{k}={getattr(sw, k)}" for k in changed) or "all off"


def main() -> None:
    args = parse()
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    data = dataset(args)
    train, query, gallery, gen_s = data
    chosen = Switches(
        args.amp, args.channels_last, args.device_augment and args.decoded_cache,
        args.decoded_cache, args.bn_group_size, args.compile, args.tf32, args.fused_optimizer,
    )  # fmt: skip
    configs = [("baseline", BASELINE)] + ([] if args.baseline_only else [("all on", chosen)])
    if args.each:
        for f in fields(Switches):
            value = getattr(chosen, f.name)
            if value != getattr(BASELINE, f.name) and f.name != "device_augment":
                one = replace(BASELINE, **{f.name: value})
                if f.name == "decoded_cache":  # the cache's point is the device augmentation
                    one = replace(one, device_augment=chosen.device_augment)
                configs.append((f.name, one))
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"{where}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{args.workers} loader workers; {', '.join(args.arch)}, {len(train)} train images at "
        f"{args.height}x{args.width}, batch {args.batch_size} (K={args.num_instances}), "
        f"{args.iters} steps ({args.warmup} warm-up), eval {len(query)} query + "
        f"{len(gallery)} gallery; synthetic set "
        + (f"generated in {gen_s:.1f}s" if gen_s else "from the cache")
    )
    rows = [
        (arch, name, sw, run_config(name, sw, args, data, device, arch))
        for arch in args.arch
        for name, sw in configs
    ]
    print(report(rows, args.batch_size, device))
    if args.json:
        setting = {"device": where, "torch": torch.__version__, "train_images": len(train),
                   "query": len(query), "gallery": len(gallery), "height": args.height,
                   "width": args.width, "batch_size": args.batch_size, "iters": args.iters,
                   "warmup": args.warmup, "workers": args.workers}  # fmt: skip
        table = [{"arch": arch, "config": name, "switches": describe(sw), **row}
                 for arch, name, sw, row in rows]  # fmt: skip
        Path(args.json).write_text(json.dumps({**setting, "rows": table}, indent=1) + "\n")


COLUMNS = ["train img/s", "step s", "extract img/s", "extract s", "cluster s", "train s",
           "eval s", "epoch s", "decode s", "peak GB", "mAP"]  # fmt: skip


def report(rows: list[tuple[str, str, Switches, dict[str, float]]], batch: int, device) -> str:
    """The table (arch x configuration), speed-ups against each arch's baseline, and arch ratios."""
    width = max(14, *(len(a) + 2 for a, *_ in rows))
    lines = [f"{'arch':{width}s}{'config':10s}" + "".join(f"{c:>14s}" for c in COLUMNS)]
    for arch, name, _sw, row in rows:
        row["step s"] = batch / row["train img/s"]
        lines.append(f"{arch:{width}s}{name:10s}" + "".join(f"{row[c]:14.3g}" for c in COLUMNS))
    base = {arch: row for arch, name, _sw, row in rows if name == "baseline"}
    for arch, name, sw, row in rows:
        if name != "baseline":
            speed = row["train img/s"] / base[arch]["train img/s"]
            epoch = base[arch]["epoch s"] / row["epoch s"]
            lines.append(f"{arch} {name}: {describe(sw)}; train x{speed:.2f}, epoch x{epoch:.2f}")
    first = rows[0][0]
    by_key = {(arch, name): row for arch, name, _sw, row in rows}
    for arch, name, _sw, row in rows:
        if arch != first:
            ref = by_key[first, name]
            lines.append(
                f"{arch} / {first} ({name}): step time x{row['step s'] / ref['step s']:.2f}, "
                f"extraction time x{ref['extract img/s'] / row['extract img/s']:.2f}"
            )
    lines.append(
        "peak GB: " + ("device allocation" if device.type == "cuda" else "process RSS (monotone)")
    )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
