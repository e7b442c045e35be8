"""Benchmark: sparse k-reciprocal Jaccard + DBSCAN versus the kNN search and the dense reference.

Usage:
    python benchmarks/pseudo_labels.py --sizes 12936 32621 --dim 2048 --dense-check

Synthetic features mimic a re-id train set: N // 17 identities (Market-1501 has
~17 images per identity), each with >= 4 images, unit-norm random centres plus
Gaussian noise of norm ~``--noise`` (per-dimension std noise / sqrt(dim)),
L2-normalised.

Every (size, pipeline) runs in its own child process, so each peak RSS is clean:
``ru_maxrss`` only ever grows, and a fresh process whose baseline is "features
generated" turns it into "peak memory of this stage above the features". The
sparse child reports a peak after each stage (kNN, then Jaccard, then DBSCAN), so
a later stage's column is the running peak of the pipeline so far. The dense
reference (``jaccard_distance`` + DBSCAN on the N x N matrix) runs in a second
child when ``--dense-check`` is given, and its labels are compared exactly.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
from sklearn.metrics import adjusted_rand_score


def synthetic_features(
    n: int, dim: int, seed: int, noise: float = 3.5
) -> tuple[np.ndarray, np.ndarray]:
    """(N, dim) float32 unit features and their identity ids; generated in chunks."""
    rng = np.random.default_rng(seed)
    ids = max(1, n // 17)
    if n < 4 * ids:
        raise ValueError(f"need at least 4 images per identity, N={n} is too small")
    sizes = 4 + np.bincount(rng.integers(0, ids, n - 4 * ids), minlength=ids)
    labels = np.repeat(np.arange(ids), sizes)[rng.permutation(n)]
    centres = rng.standard_normal((ids, dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = np.empty((n, dim), dtype=np.float32)
    step = 1 << 14
    for s0 in range(0, n, step):
        chunk = centres[labels[s0 : s0 + step]]
        chunk += rng.standard_normal(chunk.shape, dtype=np.float32) * np.float32(
            noise / np.sqrt(dim)
        )
        chunk /= np.linalg.norm(chunk, axis=1, keepdims=True)
        x[s0 : s0 + step] = chunk
    return x, labels


def _singletons(labels: np.ndarray) -> np.ndarray:
    """Outliers (-1) as one-image clusters, the convention of ``PseudoLabels.quality``."""
    out = labels.copy()
    outliers = out < 0
    out[outliers] = out.max() + 1 + np.arange(int(outliers.sum()))
    return out


def _maxrss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB on Linux


def _child(args: argparse.Namespace) -> None:
    """One pipeline on one size; prints a JSON line with stage times and peaks."""
    import torch

    from unreid.pseudo_labels import (
        PseudoLabels,
        dbscan_labels,
        jaccard_distance,
        jaccard_from_neighbours,
        knn_recall,
        knn_search,
    )
    from unreid.pseudo_labels.sparse_jaccard import jaccard_depth

    torch.set_num_threads(args.threads)
    x, truth = synthetic_features(args.n, args.dim, args.seed, args.noise)
    base = _maxrss_gb()
    out: dict[str, object] = {"n": args.n, "dim": args.dim, "features_gb": x.nbytes / 1024**3}
    if args.mode == "dense":
        t0 = time.perf_counter()
        dist = jaccard_distance(x, k1=args.k1, k2=args.k2, variant=args.variant)
        t1 = time.perf_counter()
        labels = dbscan_labels(dist, eps=args.eps, min_samples=4)
        t2 = time.perf_counter()
        out["stages"] = {
            "dense-jaccard": [t1 - t0, None],
            "dense-dbscan": [t2 - t1, None],
            "dense-reference": [t2 - t0, _maxrss_gb() - base],
        }
    else:
        stages: dict[str, list] = {}
        t0 = time.perf_counter()
        depth = jaccard_depth(args.k1, args.k2, args.variant)
        sims, idx = knn_search(
            x,
            depth,
            method=args.knn,
            hnsw_m=args.hnsw_m,
            ef_search=args.ef_search,
            ef_construction=args.ef_construction,
            ivf_nlist=args.ivf_nlist or None,
            ivf_nprobe=args.ivf_nprobe,
        )
        t1 = time.perf_counter()
        stages["knn"] = [t1 - t0, _maxrss_gb() - base]
        print(f"[N={args.n}] knn {t1 - t0:.1f} s", file=sys.stderr, flush=True)
        dist = jaccard_from_neighbours(
            x, sims, idx, k1=args.k1, k2=args.k2, variant=args.variant, max_distance=args.eps
        )
        t2 = time.perf_counter()
        stages["jaccard"] = [t2 - t1, _maxrss_gb() - base]
        print(f"[N={args.n}] jaccard {t2 - t1:.1f} s", file=sys.stderr, flush=True)
        labels = dbscan_labels(dist, eps=args.eps, min_samples=4)
        t3 = time.perf_counter()
        stages["dbscan"] = [t3 - t2, _maxrss_gb() - base]
        stages["total"] = [t3 - t0, _maxrss_gb() - base]
        out["stages"] = stages
        out["stored_per_row"] = dist.nnz / args.n
        if args.knn in ("ivf", "hnsw"):
            out["recall@10"] = knn_recall(x, idx, 10, sample=args.recall_sample, seed=args.seed)
            out["recall"] = knn_recall(x, idx, args.k1, sample=args.recall_sample, seed=args.seed)
    pl = PseudoLabels(labels)
    out["clusters"] = pl.num_clusters
    out["outliers"] = pl.num_outliers
    out["ari"] = pl.quality(truth)["ari"]
    np.save(args.labels_out, labels)
    print("RESULT " + json.dumps(out), flush=True)


def _run_child(
    args: argparse.Namespace, n: int, mode: str, labels_path: str, knn: str | None = None
) -> dict:
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        "--mode",
        mode,
        "--n",
        str(n),
        "--labels-out",
        labels_path,
    ]
    cmd += ["--knn", knn or args.knn]
    for key in ("dim", "seed", "noise", "k1", "k2", "eps", "variant", "threads"):
        cmd += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    keys = ("hnsw_m", "ef_search", "ef_construction", "ivf_nlist", "ivf_nprobe", "recall_sample")
    for key in keys:
        cmd += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)  # progress: stderr
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} run at N={n} failed (exit {proc.returncode}), see stderr above")
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[12936])
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--noise", type=float, default=3.5, help="norm of the Gaussian noise")
    ap.add_argument("--k1", type=int, default=30)
    ap.add_argument("--k2", type=int, default=6)
    ap.add_argument("--eps", type=float, default=0.6)
    ap.add_argument("--variant", default="paper", choices=["paper", "cluster_contrast"])
    knns = ["exact", "torch", "ivf", "hnsw"]
    ap.add_argument("--knn", default="torch", choices=knns)
    ap.add_argument(
        "--agree-with",
        choices=knns,
        help="also run the pipeline with this kNN backend and report the ARI between the two "
        "label sets (e.g. --knn ivf --agree-with torch)",
    )
    ap.add_argument("--ivf-nlist", type=int, default=0, help="IVF cells (0 = 4 sqrt(N))")
    ap.add_argument("--ivf-nprobe", type=int, default=8, help="IVF cells scanned per query")
    ap.add_argument("--hnsw-m", type=int, default=32, help="HNSW graph degree")
    ap.add_argument("--ef-search", type=int, default=128, help="HNSW search breadth")
    ap.add_argument("--ef-construction", type=int, default=80, help="HNSW build breadth")
    ap.add_argument("--recall-sample", type=int, default=2000, help="queries for knn_recall")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--dense-check", action="store_true", help="also run the dense reference")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="sparse", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--labels-out", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args)
        return
    header = f"{'N':>9} {'d':>5} {'stage':>16} {'seconds':>9} {'peak GB':>8}  notes"
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            sparse_path = os.path.join(tmp, f"sparse_{n}.npy")
            res = _run_child(args, n, "sparse", sparse_path)
            knn_s = res["stages"]["knn"][0]
            for stage, (sec, peak) in res["stages"].items():
                note = ""
                if stage == "knn":
                    note = f"knn={args.knn}, features {res['features_gb']:.2f} GB"
                    if "recall" in res:
                        note += (
                            f", recall@{args.k1}={res['recall']:.4f}"
                            f", recall@10={res['recall@10']:.4f}"
                        )
                elif stage == "total":
                    note = (
                        f"{sec / knn_s:.2f}x knn; {res['clusters']} clusters, "
                        f"{res['outliers']} outliers, ARI {res['ari']:.4f}, "
                        f"{res['stored_per_row']:.1f} stored/row"
                    )
                print(f"{n:>9} {args.dim:>5} {stage:>16} {sec:>9.2f} {peak:>8.3f}  {note}")
            if args.agree_with:
                other_path = os.path.join(tmp, f"other_{n}.npy")
                other = _run_child(args, n, "sparse", other_path, knn=args.agree_with)
                ari = adjusted_rand_score(
                    _singletons(np.load(other_path)), _singletons(np.load(sparse_path))
                )
                sec = other["stages"]["total"][0]
                knn_sec = other["stages"]["knn"][0]
                note = (
                    f"knn={args.agree_with}: knn {knn_sec:.2f} s; ARI with {args.knn} labels "
                    f"{ari:.4f}; ARI with truth {other['ari']:.4f}, {other['clusters']} clusters"
                )
                peak = other["stages"]["total"][1]
                stage = f"{args.agree_with}-total"
                print(f"{n:>9} {args.dim:>5} {stage:>16} {sec:>9.2f} {peak:>8.3f}  {note}")
            if args.dense_check:
                dense_path = os.path.join(tmp, f"dense_{n}.npy")
                ref = _run_child(args, n, "dense", dense_path)
                same = np.array_equal(np.load(sparse_path), np.load(dense_path))
                sec, peak = ref["stages"]["dense-reference"]
                jac = ref["stages"]["dense-jaccard"][0]
                note = (
                    f"jaccard {jac:.2f} s; labels equal: {same}; ARI {ref['ari']:.4f}, "
                    f"{ref['clusters']} clusters"
                )
                print(
                    f"{n:>9} {args.dim:>5} {'dense-reference':>16} {sec:>9.2f} {peak:>8.3f}  {note}"
                )
            sys.stdout.flush()


if __name__ == "__main__":
    main()
