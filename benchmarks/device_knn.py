"""Benchmark: exact kNN backends side by side, one process or sharded under torchrun.

Usage:
    python benchmarks/device_knn.py --images 12936 --dim 2048 --methods torch torch_fp32 torch_bf16
    python benchmarks/device_knn.py --images 32621 --dim 2048 --device cuda \\
        --methods torch torch_tf32 torch_bf16
    python benchmarks/device_knn.py --images 1000000 --dim 256 --noise 1.0 --device cuda \\
        --methods torch_bf16
    torchrun --nproc_per_node 2 benchmarks/device_knn.py --images 32621 --dim 2048 --device cuda \\
        --methods torch_bf16

Features are ``benchmarks/pseudo_labels.py``'s synthetic identities. For each
``--methods`` entry it times the kNN search (``knn_search``, on ``--device``)
and the whole pseudo-label step (search + sparse Jaccard + DBSCAN), and
compares the neighbour lists and labels with the first method's. Under
torchrun every rank joins the sharded step (``pseudo_labels.sharded``) and
rank 0 also runs the one-process step, so the labels of both can be compared;
with two processes on one GPU they share it. One run per figure: timings on a
busy machine vary, so compare rows of the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pseudo_labels import synthetic_features  # noqa: E402
from unreid.distributed import DistContext  # noqa: E402
from unreid.pseudo_labels import KNN_METHODS, knn_search  # noqa: E402
from unreid.pseudo_labels.clustering import cluster_features_at  # noqa: E402
from unreid.pseudo_labels.sharded import sharded_cluster_features_at  # noqa: E402
from unreid.pseudo_labels.sparse_jaccard import jaccard_depth  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device):
    _sync(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - t0


def one_process(args: argparse.Namespace, x: torch.Tensor, device: torch.device) -> list[dict]:
    """Each method's kNN and pseudo-label times, lists and labels against the first's."""
    depth = jaccard_depth(args.k1, args.k2, "paper")
    rows, first = [], None
    for method in args.methods:
        (_, idx), knn_s = _timed(lambda m=method: knn_search(x, depth, method=m), device)
        (labels,), total_s = _timed(
            lambda m=method: cluster_features_at(x, [args.eps], k1=args.k1, k2=args.k2, knn=m),
            device,
        )
        # three significant digits: a tiny input's milliseconds are not rounded to 0
        row = {
            "method": method,
            "knn_s": float(f"{knn_s:.3g}"),
            "labels_s": float(f"{total_s:.3g}"),
        }
        if first is None:
            first = (idx, labels.labels, knn_s, total_s)
        else:
            row["rows_differing"] = int((idx != first[0]).any(axis=1).sum())
            row["labels_equal"] = bool(np.array_equal(labels.labels, first[1]))
            row["knn_speedup"] = float(f"{first[2] / knn_s:.3g}")  # from the unrounded times
            row["labels_speedup"] = float(f"{first[3] / total_s:.3g}")
        row["clusters"] = labels.num_clusters
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def sharded(args: argparse.Namespace, x: torch.Tensor, ctx: DistContext) -> None:
    """Every rank joins the sharded step; rank 0 compares with its own one-process run."""
    for method in args.methods:
        ctx.barrier()
        out, shard_s = _timed(
            lambda m=method: sharded_cluster_features_at(
                x, [args.eps], ctx, k1=args.k1, k2=args.k2, knn=m
            ),
            ctx.device,
        )
        if ctx.is_main():
            (one,), one_s = _timed(
                lambda m=method: cluster_features_at(
                    x.to(ctx.device), [args.eps], k1=args.k1, k2=args.k2, knn=m
                ),
                ctx.device,
            )
            row = {
                "method": method, "world": ctx.world_size, "sharded_s": round(shard_s, 2),
                "one_process_s": round(one_s, 2),
                "labels_equal": bool(np.array_equal(out[0].labels, one.labels)),
                "clusters": one.num_clusters,
            }  # fmt: skip
            print(json.dumps(row), flush=True)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--images", type=int, default=12936, help="N, the number of features")
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--noise", type=float, default=3.5, help="norm of the Gaussian noise")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--k1", type=int, default=30)
    ap.add_argument("--k2", type=int, default=6)
    ap.add_argument("--eps", type=float, default=0.6)
    ap.add_argument("--methods", nargs="+", default=["torch", "torch_bf16"], choices=KNN_METHODS)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    return ap.parse_args(argv)


def main() -> None:
    args = parse()
    torch.set_num_threads(args.threads)
    ctx = DistContext.from_env(args.device)
    x, _ = synthetic_features(args.images, args.dim, args.seed, args.noise)
    xt = torch.from_numpy(x)
    info = {"n": args.images, "dim": args.dim, "device": str(ctx.device), "world": ctx.world_size}
    if ctx.device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(ctx.device)
    if ctx.is_main():
        print(json.dumps(info), flush=True)
    if ctx.distributed:
        sharded(args, xt, ctx)
    else:
        one_process(args, xt.to(ctx.device), ctx.device)
    ctx.close()


if __name__ == "__main__":
    main()
