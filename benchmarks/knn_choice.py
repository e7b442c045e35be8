"""Benchmark: which kNN search keeps the pseudo labels at large N, on camera-structured features.

Usage:
    python benchmarks/knn_choice.py --n 200000 --reference exact --record \\
        --settings ivf:nprobe=8 ivf:nprobe=32 ivf_whitened hnsw:m=32,efs=128
    python benchmarks/knn_choice.py --n 1000000 --settings auto ivf:nprobe=8 --record
    python benchmarks/knn_choice.py --n 12936 --dim 2048 --settings auto --record

Features: `structured_features` (identities seen in a few cameras, each camera
shifting all its images alike; see that module for why). A setting is
``backend[:key=value,...]`` with keys nprobe, nlist, whiten (the IVF
backends), m, efs, efc (HNSW) and refine (rounds of neighbours-of-neighbours
refinement of the approximate lists, default ``knn.REFINE``); ``auto`` is what
the clustering does by default.

Each setting runs the whole pseudo-label step (kNN, sparse Jaccard with k1 30,
k2 6, DBSCAN eps 0.6) in its own child process, so its peak RSS above the
generated features is clean. Reported per setting: stage seconds, that peak,
recall@k1 and recall@k2 against exact search (``knn_recall``, on a sample of
queries; not timed), clusters, ARI against the true identities, and -- with
``--reference exact`` -- ARI against the labels of the exact pipeline
(``knn=torch``), outliers counted as singletons. The exact labels are cached
under ``benchmarks/out/knn_choice/`` (git-ignored), so reruns skip them unless
``--fresh-reference``. ``--record`` appends one line per setting to
``benchmarks/results/scale.jsonl`` with the provenance (commit, machine,
versions, threads, load, niceness, UTC time, command); docs/scale.md's tables
are generated from those lines (``scale_table.py``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_file import RESULTS, provenance  # noqa: E402

SCALE_RESULTS = RESULTS / "scale.jsonl"
CACHE = Path(__file__).resolve().parent / "out" / "knn_choice"
KEYS = {
    "nprobe": "ivf_nprobe", "nlist": "ivf_nlist", "whiten": "ivf_whiten",
"m": "hnsw_m", "efs": "ef_search", "efc": "ef_construction", "refine": "refine",
}  # fmt: skip
EXACT = "torch"


def parse_setting(text: str) -> tuple[str, dict[str, float | int]]:
    """``"ivf_whitened:nprobe=32,whiten=-0.5"`` -> (backend, knn_search keyword arguments)."""
    from unreid.pseudo_labels.knn import KNN_METHODS

    backend, _, rest = text.partition(":")
    if backend not in KNN_METHODS:
        raise ValueError(f"setting {text!r}: backend must be one of {KNN_METHODS}")
    kwargs: dict[str, float | int] = {}
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        if not sep or key not in KEYS:
            raise ValueError(
                f"setting {text!r}: {item!r} is not key=value with key in {list(KEYS)}"
            )
        kwargs[KEYS[key]] = float(value) if key == "whiten" else int(value)
    return backend, kwargs


def _maxrss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB on Linux


def _child(args: argparse.Namespace) -> None:
    """One setting on one size; saves its labels and prints a RESULT JSON line."""
    import faiss
    import torch
    from structured_features import structured_features

    from unreid.pseudo_labels import PseudoLabels, dbscan_labels, jaccard_from_neighbours
    from unreid.pseudo_labels.knn import knn_recall, knn_search, resolve_knn
    from unreid.pseudo_labels.sparse_jaccard import jaccard_depth

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    backend, kwargs = parse_setting(args.setting)
    x, truth, _ = structured_features(args.n, args.dim, args.seed)
    base = _maxrss_gb()
    stages: dict[str, list[float]] = {}
    t0 = time.perf_counter()
    sims, idx = knn_search(x, jaccard_depth(args.k1, args.k2, "paper"), method=backend, **kwargs)
    t1 = time.perf_counter()
    stages["knn"] = [t1 - t0, _maxrss_gb() - base]
    print(f"[{args.setting} N={args.n}] knn {t1 - t0:.1f} s", file=sys.stderr, flush=True)
    dist = jaccard_from_neighbours(x, sims, idx, k1=args.k1, k2=args.k2, max_distance=args.eps)
    t2 = time.perf_counter()
    stages["jaccard"] = [t2 - t1, _maxrss_gb() - base]
    labels = dbscan_labels(dist, eps=args.eps, min_samples=4)
    t3 = time.perf_counter()
    stages["dbscan"] = [t3 - t2, _maxrss_gb() - base]
    stages["total"] = [t3 - t0, _maxrss_gb() - base]
    resolved = resolve_knn(backend, args.n, False)
    recall: dict[str, float | None] = {f"recall@{args.k1}": None, f"recall@{args.k2}": None}
    if resolved not in ("torch", "exact") and not backend.startswith("torch_"):
        for k in (args.k1, args.k2):
            recall[f"recall@{k}"] = knn_recall(x, idx, k, sample=args.recall_sample, seed=args.seed)
    pl = PseudoLabels(labels)
    np.save(args.labels_out, labels)
    out = {
        "knn": resolved, "stages": stages, "features_gb": x.nbytes / 1024**3, **recall,
        "clusters": pl.num_clusters, "outliers": pl.num_outliers, "identities": int(truth.max()) + 1,
        "ari_truth": pl.quality(truth)["ari"], "stored_per_row": dist.nnz / args.n,
    }  # fmt: skip
    print("RESULT " + json.dumps(out), flush=True)


def run_setting(args: argparse.Namespace, setting: str, labels_out: Path) -> dict:
    """The child's RESULT for one setting (progress goes to stderr)."""
    cmd = [sys.executable, os.path.abspath(__file__), "--child", "--setting", setting,
           "--labels-out", str(labels_out)]  # fmt: skip
    for key in ("n", "dim", "seed", "k1", "k2", "eps", "threads", "recall_sample"):
        cmd += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"setting {setting!r} at N={args.n} failed (exit {proc.returncode})")
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def _singletons(labels: np.ndarray) -> np.ndarray:
    """Outliers (-1) as one-image clusters, the convention of ``PseudoLabels.quality``."""
    out = labels.copy()
    outliers = out < 0
    out[outliers] = out.max() + 1 + np.arange(int(outliers.sum()))
    return out


def context(args: argparse.Namespace) -> dict:
    """What every line of this invocation shares: inputs, provenance, load."""
    import faiss
    from structured_features import CAMERA_SHIFT, CAMERAS, CAMS_PER_ID, NOISE, TRACKLET

    return {
        "n": args.n, "dim": args.dim, "seed": args.seed, "k1": args.k1, "k2": args.k2,
        "eps": args.eps, "threads": args.threads, "recall_sample": args.recall_sample,
        "features": {"kind": "structured", "cameras": CAMERAS, "cams_per_id": list(CAMS_PER_ID),
                     "camera_shift": CAMERA_SHIFT, "tracklet": TRACKLET, "noise": NOISE},
        **provenance(), "faiss": faiss.__version__, "nice": os.nice(0),
        "load_at_start": [round(v, 2) for v in os.getloadavg()],
        "command": "python benchmarks/knn_choice.py " + " ".join(sys.argv[1:]),
    }  # fmt: skip


def reference_labels(args: argparse.Namespace, shared: dict) -> tuple[np.ndarray, dict]:
    """The exact pipeline's labels (cached per size, dim and seed) and its result line."""
    CACHE.mkdir(parents=True, exist_ok=True)
    eps = str(args.eps).replace(".", "p")  # no dot: with_suffix would cut the name there
    stem = CACHE / f"exact_n{args.n}_d{args.dim}_s{args.seed}_k{args.k1}-{args.k2}_e{eps}"
    labels_path, line_path = stem.with_suffix(".npy"), stem.with_suffix(".json")
    if args.fresh_reference or not (labels_path.is_file() and line_path.is_file()):
        res = run_setting(args, EXACT, labels_path)
        line = finish(shared, EXACT, res, ari_exact=1.0)
        line_path.write_text(json.dumps(line))
        if args.record:
            append(line)
        print_row(line)
    line = json.loads(line_path.read_text())
    return np.load(labels_path), line


def finish(shared: dict, setting: str, res: dict, ari_exact: float | None) -> dict:
    finished = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return {**shared, "setting": setting, **res, "ari_exact": ari_exact, "finished": finished}


def append(line: dict) -> None:
    SCALE_RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with open(SCALE_RESULTS, "a") as f:
        f.write(json.dumps(line, ensure_ascii=False) + "\n")


def print_row(line: dict) -> None:
    st = line["stages"]
    r1, r2 = line[f"recall@{line['k1']}"], line[f"recall@{line['k2']}"]

    def f(v: float | None) -> str:
        return "–" if v is None else f"{v:.4f}"

    print(
        f"{line['n']:>8} {line['setting']:<34} {line['knn']:<13} {st['knn'][0]:>8.1f} "
        f"{st['total'][0]:>8.1f} {st['total'][1]:>6.2f} {f(r1)} {f(r2)} {line['clusters']:>7} {f(line['ari_exact'])} "
        f"{f(line['ari_truth'])}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--k1", type=int, default=30)
    ap.add_argument("--k2", type=int, default=6)
    ap.add_argument("--eps", type=float, default=0.6)
    ap.add_argument("--settings", nargs="+", default=["auto"], help="backend[:key=value,...]")
    ap.add_argument("--reference", choices=["exact", "none"], default="none")
    ap.add_argument("--fresh-reference", action="store_true", help="recompute the cached labels")
    ap.add_argument("--record", action="store_true", help=f"append lines to {SCALE_RESULTS.name}")
    ap.add_argument("--recall-sample", type=int, default=2000, help="queries for knn_recall")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--setting", default="", help=argparse.SUPPRESS)
    ap.add_argument("--labels-out", default="", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        _child(args)
        return
    for s in args.settings:
        parse_setting(s)  # fail before any work
    shared = context(args)
    print(f"{'N':>8} {'setting':<34} {'backend':<13} {'knn s':>8} {'total s':>8} {'peakGB':>6} "
          f"r@{args.k1:<4} r@{args.k2:<4} {'clusters':>7} ARIexact ARItruth")  # fmt: skip
    ref = reference_labels(args, shared)[0] if args.reference == "exact" else None
    CACHE.mkdir(parents=True, exist_ok=True)
    for setting in args.settings:
        labels_path = CACHE / f"labels_{os.getpid()}.npy"
        res = run_setting(args, setting, labels_path)
        labels = np.load(labels_path)
        labels_path.unlink()
        ari = None
        if ref is not None:
            from sklearn.metrics import adjusted_rand_score

            ari = float(adjusted_rand_score(_singletons(ref), _singletons(labels)))
        line = finish(shared, setting, res, ari)
        if args.record:
            append(line)
        print_row(line)


if __name__ == "__main__":
    main()
