"""Exact kNN from low-precision matrix products: bf16 / TF32 scores, float64 re-ranking.

The kNN search is the O(N^2 D) step of pseudo labelling. bf16 products run
several times faster than fp32 on GPUs and on CPUs with bf16 instructions
(avx512_bf16 / AMX), but a bf16 score is only good to ~1e-2, enough to reorder
close neighbours and so change who is in whose k-reciprocal set. This module
uses the fast scores only to *select* candidates and decides the ranking
exactly:

1. for a chunk of query rows, scores against every row in the chosen
   precision (``PRECISIONS``), memory bounded by ``chunk_elems`` not N^2;
2. the top ``depth + extra`` candidates by that score are re-scored in
   float64 (the product of two float32 numbers is exact in float64, so the
   only rounding left is the sum, ~1e-16);
3. the rows are ranked by (float64 similarity descending, lower index first),
   the point itself forced to rank 0;
4. each row is *certified*: the low-precision score differs from the true one
   by at most ``ScoreBound`` (a worst-case rounding bound from the measured
   rounding of the features, the format and the dimension), so once no
   score left out reaches the depth-th exact similarity minus that bound,
   nothing left out can enter or tie the top ``depth``. Rows that fail (the
   cut runs through a dense band of near-equal scores) are re-scored over
   every column within the bound, taken from the chunk still in memory.

So the lists are the exact ones under that order, whatever the precision,
chunk size, device or sharding of the queries: a row's result depends on that
row alone, which is what lets torchrun ranks split the queries and still agree
with one process (``sharded.py``). Exact ties (duplicate images) are ordered by
index; float64 near-ties closer than ~1e-16 are ordered as their float64 sums
fall, which differs from the fp32 ``"torch"`` backend's order only for
neighbours whose fp32 similarities round to within ~1e-7 of each other.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from unreid.neighbours import sort_candidates

_CPU_CHUNK_ELEMS = 1 << 24  # score cells per chunk on CPU (64 MB as float32)
_CUDA_CHUNK_ELEMS = 1 << 28  # on a GPU: large products keep it busy
_RESCORE_ELEMS = 1 << 22  # float64 cells of gathered candidate rows held at once
DEFAULT_EXTRA = 32  # candidates beyond the depth taken from the low-precision scores


@dataclass(frozen=True)
class Precision:
    """How the candidate scores are computed, and what bounds their error.

    ``dtype`` is what the features are cast to before the product (the cast's
    rounding is then measured row by row); ``kernel_roundoff`` is the relative
    rounding the product itself applies to its inputs (TF32 tensor cores,
    truncation allowed) and ``output_roundoff`` that of the stored score.
    Accumulation is in float32 in every case (cuBLAS, oneDNN and torch's kernels).
    """

    dtype: torch.dtype
    tf32: bool
    kernel_roundoff: float
    output_roundoff: float


PRECISIONS: dict[str, Precision] = {
    "bf16": Precision(torch.bfloat16, False, 0.0, 2.0**-8),
    # TF32 only changes CUDA matrix products; on CPU the fp32 product runs (and the
    # bound, written for TF32, still holds)
    "tf32": Precision(torch.float32, True, 2.0**-10, 0.0),
    "fp32": Precision(torch.float32, False, 0.0, 0.0),
}


def _precision(name: str) -> Precision:
    if name not in PRECISIONS:
        raise ValueError(f"precision must be one of {tuple(PRECISIONS)}, found {name!r}")
    return PRECISIONS[name]


@dataclass(frozen=True)
class ScoreBound:
    """|score(q, j) - <x_q, x_j>| <= ``row[q]`` + ``out`` |score(q, j)| for every j.

    With x~ = x + r the rows as the product sees them, x~_q . x~_j - x_q . x_j =
    r_q . x~_j + x_q . r_j, bounded by Cauchy-Schwarz with the measured residual
    norms |r| (the largest over j); summing D products in float32 in any order
    adds at most gamma_D |x~_q| |x~_j|, gamma_D = D 2^-24 / (1 - D 2^-24); the
    output cast adds ``out`` = u / (1 - u) of the stored value. Worst cases
    throughout, with 1% slack for the bound's own rounding: a certified row is
    exact, not probably exact.
    """

    row: torch.Tensor  # float64 (N,), per query row
    out: float

    @classmethod
    def of(cls, x: torch.Tensor, xs: torch.Tensor, p: Precision) -> ScoreBound:
        norm, resid, seen_norm = (torch.empty(x.shape[0], dtype=torch.float64) for _ in "abc")
        step = max(1, _RESCORE_ELEMS // x.shape[1])  # float64 copies, a block at a time
        for b0 in range(0, x.shape[0], step):
            x64 = x[b0 : b0 + step].to(torch.float64)
            seen = xs[b0 : b0 + step].to(torch.float64)
            norm[b0 : b0 + step] = x64.norm(dim=1).cpu()
            resid[b0 : b0 + step] = (seen - x64).norm(dim=1).cpu()
            seen_norm[b0 : b0 + step] = seen.norm(dim=1).cpu()
        resid += p.kernel_roundoff * norm
        seen_norm += p.kernel_roundoff * norm
        dim = x.shape[1]
        gamma = dim * 2.0**-24 / max(1e-12, 1.0 - dim * 2.0**-24)
        max_seen, max_resid = float(seen_norm.max()), float(resid.max())
        row = resid * max_seen + norm * max_resid + gamma * seen_norm * max_seen
        u = p.output_roundoff
        return cls((row * 1.01 + 1e-12).to(x.device), u / (1.0 - u) * 1.01)

    def threshold(self, exact: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """Lowest score that could belong to a similarity >= ``exact`` (per query row).

        score + out |score| >= exact - row[q] solved for the score (monotone in it).
        """
        t = exact - self.row[q]
        return torch.where(t >= 0, t / (1.0 + self.out), t / (1.0 - self.out))


def _rescore(x: torch.Tensor, q: torch.Tensor, cand: torch.Tensor) -> torch.Tensor:
    """float64 <x_q, x_c> for each query row and its candidates; self set to +inf.

    Batched matrix-vector products on the gathered rows, a block of query rows
    at a time (memory bounded by ``_RESCORE_ELEMS``); each pair's products are
    exact in float64, so only its sum rounds (~1e-16 relative).
    """
    out = torch.empty(cand.shape, dtype=torch.float64, device=x.device)
    step = max(1, _RESCORE_ELEMS // max(1, cand.shape[1] * x.shape[1]))
    for b0 in range(0, q.shape[0], step):
        qb, cb = q[b0 : b0 + step], cand[b0 : b0 + step]
        xq = x[qb].to(torch.float64).unsqueeze(2)
        out[b0 : b0 + step] = torch.bmm(x[cb].to(torch.float64), xq).squeeze(2)
    out[cand == q[:, None]] = float("inf")
    return out


@contextlib.contextmanager
def _cuda_matmul_tf32(enabled: bool, device: torch.device) -> Iterator[None]:
    """fp32 CUDA products in TF32 (or IEEE fp32), bf16 ones with fp32 sums; then as before.

    ``ScoreBound`` assumes float32 accumulation, so cuBLAS's reduced-precision
    (bf16) split-K reductions are switched off. torch >= 2.9 refuses to mix its
    per-backend ``fp32_precision`` with the legacy ``allow_tf32`` flag (see
    ``unreid.precision.set_tf32``), so the new one is used when it exists. CPU
    products are left alone (IEEE fp32, float32 sums).
    """
    if device.type != "cuda":
        yield
        return
    cublas = torch.backends.cuda.matmul
    new_api = hasattr(cublas, "fp32_precision")
    before = cublas.fp32_precision if new_api else cublas.allow_tf32
    reduced = cublas.allow_bf16_reduced_precision_reduction
    try:
        cublas.allow_bf16_reduced_precision_reduction = False
        if new_api:
            cublas.fp32_precision = "tf32" if enabled else "ieee"
        else:  # pragma: no cover - torch < 2.9
            cublas.allow_tf32 = enabled
        yield
    finally:
        cublas.allow_bf16_reduced_precision_reduction = reduced
        if new_api:
            cublas.fp32_precision = before
        else:  # pragma: no cover - torch < 2.9
            cublas.allow_tf32 = before


def _rank(vals: torch.Tensor, idx: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(float64 similarity desc, index asc) order of each row's candidates, as numpy."""
    return sort_candidates(vals.cpu().numpy(), idx.cpu().numpy(), descending=True)


def device_knn(
    features: torch.Tensor,
    queries: np.ndarray,
    depth: int,
    *,
    precision: str = "bf16",
    extra: int = DEFAULT_EXTRA,
    chunk_elems: int | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Exact ranked neighbours of ``queries`` from ``precision`` scores: ``(sims, idx, refined)``.

    Args:
        features: (N, D) float32 unit rows on any device (validated by the caller,
            ``knn.knn_search``); the products run there.
        queries: 1-D int64 row ids.
        depth: entries per row, self included, in [1, N].
        precision: a ``PRECISIONS`` name: ``"bf16"``, ``"tf32"`` or ``"fp32"``.
        extra: candidates taken beyond ``depth`` before re-scoring (more makes
            certification failures rarer, each costs a wider re-score).
        chunk_elems: score cells per query chunk (None: 2^24 on CPU, 2^28 on CUDA).

    Returns:
        ``sims`` (Q, depth) float32 (the float64 similarities rounded; column 0,
        self, is +inf), ``idx`` (Q, depth) int64, and how many rows needed the
        widened re-score.
    """
    p = _precision(precision)
    n, dim = features.shape
    if isinstance(extra, bool) or not isinstance(extra, (int, np.integer)) or extra < 0:
        raise ValueError(f"extra must be an integer >= 0, found {extra!r}")
    if not 1 <= depth <= n:
        raise ValueError(f"depth must be in [1, N={n}], found {depth}")
    dev = features.device
    if chunk_elems is None:
        chunk_elems = _CUDA_CHUNK_ELEMS if dev.type == "cuda" else _CPU_CHUNK_ELEMS
    x = features
    xs = x.to(p.dtype)
    bound = ScoreBound.of(x, xs, p)
    cand = min(n, depth + int(extra))
    q_all = torch.as_tensor(np.asarray(queries, dtype=np.int64), device=dev)
    sims_out = np.empty((q_all.shape[0], depth), dtype=np.float32)
    idx_out = np.empty((q_all.shape[0], depth), dtype=np.int64)
    refined = 0
    chunk = max(1, int(chunk_elems) // n)
    with _cuda_matmul_tf32(p.tf32, dev):
        for r0 in range(0, q_all.shape[0], chunk):
            q = q_all[r0 : r0 + chunk]
            rows = torch.arange(q.shape[0], device=dev)
            low = (xs[q] @ xs.T).to(torch.float32)
            low[rows, q] = float("inf")
            _, cidx = torch.topk(low, cand, dim=1, largest=True, sorted=False)
            vals, idx = _rank(_rescore(x, q, cidx), cidx)
            if cand < n:
                # depth-th exact similarity minus the bound: nothing scoring below can enter
                cut = torch.from_numpy(vals[:, depth - 1]).to(dev)
                thr = bound.threshold(cut, q)
                # compare float32 scores with the threshold rounded down, never up
                thr32 = thr.to(torch.float32)
                thr32 = torch.where(
                    thr32.to(torch.float64) > thr,
                    torch.nextafter(thr32, torch.full_like(thr32, -torch.inf)),
                    thr32,
                )
                need = (low >= thr32[:, None]).sum(dim=1)
                wide = torch.nonzero(need > cand).flatten()
                if wide.numel():
                    refined += int(wide.numel())
                    k = int(need[wide].max())
                    _, widx = torch.topk(low[wide], k, dim=1, largest=True, sorted=False)
                    wv, wi = _rank(_rescore(x, q[wide], widx), widx)
                    w = wide.cpu().numpy()
                    vals[w, :depth], idx[w, :depth] = wv[:, :depth], wi[:, :depth]
            sims_out[r0 : r0 + q.shape[0]] = vals[:, :depth]
            idx_out[r0 : r0 + q.shape[0]] = idx[:, :depth]
            del low
    return sims_out, idx_out, refined
