"""Cost of one CAP + Cluster Contrast training step's losses, at Market-1501 scale.

The reference code computes the inter-camera loss with a Python loop over the
batch (one sort of all proxies per sample); ours is one masked top-k over the
whole batch. Both are timed side by side here, forward + backward, with the
plain ClusterNCE term for scale, and checked equal.

Default size: Market-1501 after clustering (about 600 clusters seen by about 5
of 6 cameras: 3,000 proxies), batch 256, 2048-d features.

    python benchmarks/cap_losses.py
    python benchmarks/cap_losses.py --device cuda
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from unreid.losses import cluster_nce
from unreid.losses.camera_proxy_nce import inter_camera_nce, intra_camera_nce
from unreid.memory.camera_proxy_memory import CameraProxyMemory


def loop_inter(x, targets, cameras, bank, proxy_cluster, k, tau):
    """The reference formulation: per camera, per sample, sort every proxy (positives: all)."""
    xn = F.normalize(x, dim=1)
    sims_all = xn @ bank.T
    loss = x.new_zeros(())
    for cam in torch.unique(cameras):
        rows = (cameras == cam).nonzero().flatten()
        total = x.new_zeros(())
        for i in rows:
            sims = sims_all[i]
            pos = (proxy_cluster == targets[i]).nonzero().flatten()
            masked = sims.detach().clone()
            masked[pos] = -10000.0
            neg = torch.sort(masked)[1][-k:]
            logits = torch.cat([sims[pos], sims[neg]]) / tau
            target = torch.zeros_like(logits)
            target[: len(pos)] = 1.0 / len(pos)
            total = total - (F.log_softmax(logits, 0) * target).sum()
        loss = loss + total / len(rows)
    return loss


def timed(fn, device, repeats):
    fn()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clusters", type=int, default=600)
    ap.add_argument("--cameras", type=int, default=6)
    ap.add_argument("--images", type=int, default=12000)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--hard-negatives", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    device = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, args.clusters, (args.images,), generator=g)
    cameras = torch.randint(0, args.cameras, (args.images,), generator=g)
    feats = F.normalize(torch.randn(args.images, args.dim, generator=g), dim=1).to(device)
    mem = CameraProxyMemory(args.dim).to(device)
    mem.reset(feats, labels.to(device), cameras.to(device))
    centroids = F.normalize(torch.randn(args.clusters, args.dim, generator=g), dim=1).to(device)
    idx = torch.randperm(args.images, generator=g)[: args.batch]
    x = torch.randn(args.batch, args.dim, generator=g).to(device).requires_grad_(True)
    y, c = labels[idx].to(device), cameras[idx].to(device)
    rows = mem.proxy_of(y, c)
    k, tau = args.hard_negatives, 0.07

    def step(loss_fn):
        def run():
            x.grad = None
            loss = loss_fn()
            loss.backward()
            return loss.detach()

        return run

    cases = {
        "cluster_nce (CC term)": lambda: cluster_nce(x, y, centroids, 0.05),
        "intra_camera_nce": lambda: intra_camera_nce(x, rows, c, mem.bank, mem.proxy_camera, tau),
        "inter_camera_nce (ours)": lambda: inter_camera_nce(
            x, y, c, mem.bank, mem.proxy_cluster, mem.proxy_camera, tau, k, "all"
        ),
        "inter, per-sample loop (reference form)": lambda: loop_inter(
            x, y, c, mem.bank, mem.proxy_cluster, k, tau
        ),
    }
    print(
        f"{mem.num_proxies} proxies ({args.clusters} clusters x {args.cameras} cameras), "
        f"batch {args.batch}, d {args.dim}, {k} hard negatives, device {device}"
    )
    print(f"{'loss':42s} {'fwd+bwd ms':>11s} {'value':>10s}")
    results = {}
    for name, fn in cases.items():
        seconds, value = timed(step(fn), device, args.repeats)
        results[name] = (seconds, value)
        print(f"{name:42s} {1000 * seconds:11.1f} {value.item():10.4f}")
    ours, ref = (
        results["inter_camera_nce (ours)"],
        results["inter, per-sample loop (reference form)"],
    )
    print(
        f"inter: loop / ours = {ref[0] / ours[0]:.1f}x; values equal: "
        f"{torch.allclose(ours[1], ref[1], rtol=1e-4)}"
    )


if __name__ == "__main__":
    main()
