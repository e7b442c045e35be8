"""Streaming evaluation vs the dense argsort evaluator on synthetic re-id features.

Default size is MSMT17's test split (11,659 queries x 82,161 gallery, d = 2048).
Features are unit vectors around per-identity centres (about 27 images per
identity, 15 cameras, 2% junk), so AP values are neither trivial nor near zero.

Rows printed:
* ``matmul floor``: the chunked distance computation alone (no ranking), i.e. what
  any exact evaluator must pay on this machine;
* ``streaming``: `evaluate_streaming` at full size;
* ``streaming (sub)`` / ``brute force (sub)``: both evaluators on the same random
  subsample of queries and gallery; ``equal`` says whether mAP, CMC and the query
  counts are identical;
* ``brute force (full, est.)``: the memory the dense evaluator would need at full
  size (float32 distances + int64 argsort + per-row masks of one chunk).

Peak RSS is the process-wide ``ru_maxrss`` read after each step, so it includes
the features; later rows cannot report less than earlier ones (the brute force
runs last, on a subsample, for that reason).

    python benchmarks/evaluation.py --queries 11659 --gallery 82161 --dim 2048
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

import numpy as np
import torch

from unreid.evaluation.dense import evaluate_ranking, pairwise_distance
from unreid.evaluation.distances import default_chunk_size, distance_chunks
from unreid.evaluation.streaming import evaluate_streaming


def peak_rss_gb() -> float:
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 1e9


def synthetic(nq: int, ng: int, dim: int, noise: float, seed: int):
    """Unit features around identity centres, written block by block (no float64 copy)."""
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    n_ids = max(2, ng // 27)
    centres = torch.nn.functional.normalize(torch.randn(n_ids, dim, generator=gen), dim=1)
    g_pids = rng.integers(0, n_ids, ng)
    q_pids = rng.choice(g_pids, nq)
    g_cams, q_cams = rng.integers(0, 15, ng), rng.integers(0, 15, nq)

    def feats(pids: np.ndarray) -> torch.Tensor:
        out = torch.empty(len(pids), dim)
        for r0 in range(0, len(pids), 4096):
            p = torch.from_numpy(pids[r0 : r0 + 4096])
            block = centres[p] + noise * torch.randn(len(p), dim, generator=gen) / dim**0.5
            out[r0 : r0 + len(p)] = torch.nn.functional.normalize(block, dim=1)
        return out

    qf, gf = feats(q_pids), feats(g_pids)
    g_pids = np.where(rng.random(ng) < 0.02, -1, g_pids)  # junk
    return qf, gf, q_pids, g_pids, q_cams, g_cams


def same(a, b) -> bool:
    return (
        a.mAP == b.mAP
        and np.array_equal(a.cmc, b.cmc)
        and (a.num_valid_queries, a.num_skipped_queries)
        == (b.num_valid_queries, b.num_skipped_queries)
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--queries", type=int, default=11659)
    ap.add_argument("--gallery", type=int, default=82161)
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--chunk", type=int, default=None, help="query rows per chunk")
    ap.add_argument(
        "--check-subsample",
        type=int,
        default=2000,
        help="queries in the brute-force check; the gallery is subsampled in proportion",
    )
    ap.add_argument(
        "--separation",
        type=float,
        default=3.0,
        help="same-identity cosine in units of the random-pair cosine spread 1/sqrt(d)",
    )
    ap.add_argument("--no-floor", action="store_true", help="skip the matmul-only pass")
    ap.add_argument(
        "--rerank",
        action="store_true",
        help="also time k-reciprocal re-ranking (k1=20, k2=6, lambda=0.3) on the subsample",
    )
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    nq, ng, dim = args.queries, args.gallery, args.dim
    chunk = args.chunk or default_chunk_size(ng)

    # two images of one identity have cosine about 1 / (1 + noise^2)
    noise = max(0.0, dim**0.5 / args.separation - 1.0) ** 0.5
    rss0 = peak_rss_gb()
    t0 = time.perf_counter()
    qf, gf, qp, gp, qc, gc = synthetic(nq, ng, dim, noise, args.seed)
    feat_gb = (qf.numel() + gf.numel()) * 4 / 1e9
    print(
        f"RSS before data (imports) {rss0:.2f} GB; "
        f"data: {time.perf_counter() - t0:.1f} s, features {feat_gb:.2f} GB, "
        f"RSS after data {peak_rss_gb():.2f} GB, chunk {chunk} rows, "
        f"torch threads {torch.get_num_threads()}"
    )
    rows = []

    t0 = time.perf_counter()
    full = evaluate_streaming(qf, gf, qp, gp, qc, gc, chunk_size=chunk)
    rows.append(("streaming", nq, ng, time.perf_counter() - t0, peak_rss_gb(), full, "-"))

    if not args.no_floor:
        t0 = time.perf_counter()
        for _ in distance_chunks(qf, gf, chunk):
            pass
        rows.append(("matmul floor", nq, ng, time.perf_counter() - t0, peak_rss_gb(), None, "-"))

    rng = np.random.default_rng(args.seed + 1)
    sq = min(nq, args.check_subsample)
    sg = min(ng, max(1, round(ng * sq / nq)))
    qi, gi = np.sort(rng.choice(nq, sq, replace=False)), np.sort(rng.choice(ng, sg, replace=False))
    sub = (qf[qi], gf[gi], qp[qi], gp[gi], qc[qi], gc[gi])
    t0 = time.perf_counter()
    s_metrics = evaluate_streaming(*sub, chunk_size=chunk)
    t_stream = time.perf_counter() - t0
    rows.append(("streaming (sub)", sq, sg, t_stream, peak_rss_gb(), s_metrics, "-"))
    t0 = time.perf_counter()
    b_metrics = evaluate_ranking(pairwise_distance(sub[0], sub[1]), *sub[2:])
    t_brute = time.perf_counter() - t0
    eq = str(same(s_metrics, b_metrics))
    rows.append(("brute force (sub)", sq, sg, t_brute, peak_rss_gb(), b_metrics, eq))
    if args.rerank:
        t0 = time.perf_counter()
        r_metrics = evaluate_streaming(*sub, chunk_size=chunk, rerank=True)
        rows.append(
            (
                "re-ranked streaming (sub)",
                sq,
                sg,
                time.perf_counter() - t0,
                peak_rss_gb(),
                r_metrics,
                "-",
            )
        )
    dense_gb = nq * ng * (4 + 8) / 1e9 + feat_gb
    rows.append(("brute force (full, est.)", nq, ng, float("nan"), dense_gb, None, "-"))

    print(
        f"\n{'method':<26}{'Q':>7}{'G':>8}{'d':>6}{'s':>9}{'peakGB':>8}{'mAP':>8}{'R1':>8}  equal"
    )
    for name, q, g, sec, rss, m, eq in rows:
        mp = f"{100 * m.mAP:8.2f}{100 * m.rank1:8.2f}" if m is not None else f"{'-':>8}{'-':>8}"
        print(f"{name:<26}{q:>7}{g:>8}{dim:>6}{sec:>9.1f}{rss:>8.2f}{mp}  {eq}")
    if not args.no_floor:
        floor = rows[1][3]
        print(f"\nranking overhead over the matmul floor: {rows[0][3] - floor:.1f} s")
    print(f"subsample: streaming {t_stream:.2f} s vs brute force {t_brute:.2f} s")


if __name__ == "__main__":
    main()
