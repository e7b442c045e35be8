"""Sparse Jaccard distances of the pairs whose query-expanded encodings share a column.

The last step of `unreid.pseudo_labels.sparse_jaccard`, and its hot loop: for
pairs g > p, sum min(V[p, j], V[g, j]) over the shared columns j, row block by
row block. Each V entry (p, j) meets the entries of column j at rows > p; the
minima are summed per pair either in a dense (rows x N) buffer (Market size) or
by sorting each row's contributions (large N, where a row reaches a few hundred
partners out of a million), and each finished block is turned into distances
and filtered before the next starts, so memory stays at the size of the result.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

_PAIR_CHUNK = 1 << 22  # (entry, partner) contributions generated at once
_BUFFER_ELEMS = 1 << 24  # float cells of the dense per-block accumulation buffer
# the dense buffer is used while N <= this x (contributions per row): scanning a
# cell costs ~1/16 of sorting a contribution (measured at N = 13k and 200k)
_DENSE_COST_RATIO = 16.0


@dataclass
class _PairPlan:
    """V's entries paired with the same column's entries in later rows.

    Every CSR entry (p, j) meets the entries of column j at rows g > p; those
    are contiguous in the row-sorted CSC arrays, starting at ``first[e]`` and
    ``reps[e]`` long, so a row block's contributions are one repeat and one
    near-sequential gather. ``row_work`` is the cumulative contribution count.
    """

    data: np.ndarray  # float32 CSR values of V
    row_ptr: np.ndarray  # int64 CSR indptr
    first: np.ndarray  # CSC slot of the first partner entry of each CSR entry
    reps: np.ndarray  # partners g > p of each CSR entry
    col_rows: np.ndarray  # CSC row ids
    col_vals: np.ndarray  # CSC values
    row_work: np.ndarray  # (N + 1,) cumulative contributions per row
    itype: type

    @classmethod
    def build(cls, vq: sp.csr_matrix) -> _PairPlan:
        n, nnz = vq.shape[0], vq.nnz
        data = vq.data.astype(np.float32)
        ids = sp.csr_matrix((np.arange(nnz, dtype=np.float64), vq.indices, vq.indptr), shape=(n, n))
        csc_ids = ids.tocsc()
        csc_ids.sort_indices()
        entry = csc_ids.data.astype(np.int64)
        del ids
        # 32-bit positions where they fit: the pair loop is memory-bound
        itype = np.int32 if max(nnz, _PAIR_CHUNK, n) < 2**31 - 1 else np.int64
        pos = np.empty(nnz, dtype=itype)
        pos[entry] = np.arange(nnz, dtype=itype)
        reps = csc_ids.indptr[vq.indices + 1] - pos - 1
        row_ptr = vq.indptr.astype(np.int64)
        row_work = np.zeros(n + 1, dtype=np.int64)
        counts = np.diff(row_ptr)
        np.cumsum(np.add.reduceat(reps, row_ptr[:-1]) * (counts > 0), out=row_work[1:])
        return cls(
            data=data,
            row_ptr=row_ptr,
            first=pos + 1,
            reps=reps,
            col_rows=csc_ids.indices.astype(itype),
            col_vals=data[entry],
            row_work=row_work,
            itype=itype,
        )

    def blocks(
        self, max_rows: int, rows: range | None = None
    ) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
        """(r0, r1, partners, mins) per row block of <= ``_PAIR_CHUNK`` contributions.

        ``rows`` (default all) restricts the blocks to a contiguous range of p,
        one torchrun rank's shard; a pair's sum depends on its row alone.

        ``partners`` are the rows g > p met through a shared column; contributions come
        grouped by row p, in CSR order.
        """
        n = self.row_ptr.size - 1
        itype = self.itype
        r0, n = (0, n) if rows is None else (rows.start, rows.stop)
        while r0 < n:
            r1 = int(np.searchsorted(self.row_work, self.row_work[r0] + _PAIR_CHUNK, "right")) - 1
            r1 = min(n, r0 + max_rows, max(r0 + 1, r1))
            e0, e1 = int(self.row_ptr[r0]), int(self.row_ptr[r1])
            rep = self.reps[e0:e1]
            total = int(self.row_work[r1] - self.row_work[r0])
            starts = (np.cumsum(rep) - rep).astype(itype)
            b = np.repeat(self.first[e0:e1] - starts, rep)
            b += np.arange(total, dtype=itype)
            partners = self.col_rows[b]
            mins = np.minimum(np.repeat(self.data[e0:e1], rep), self.col_vals[b])
            yield r0, r1, partners, mins
            r0 = r1


def pair_distances(
    vq: sp.csr_matrix, max_distance: float, rows: range | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs p < g with shared support and d_J <= max_distance, as (p, g, d float32).

    ``rows`` restricts p to a contiguous range (a shard; default all rows): the
    shards' pairs, concatenated in row order, are the whole result.

    d = 1 - m / (|V_p| + |V_g| - m) with m = sum_j min(V[p, j], V[g, j]), since
    sum(max) = |V_p| + |V_g| - m. The per-pair sums are reduced one of two ways,
    picked by a cost estimate:

    * a dense float32 buffer of (rows x N) cells per row block, scattered into
      with ``index_add_`` and scanned once: cheap while a row's contributions
      outnumber N / 16, as at Market size (~9k contributions per row, N = 13k);
    * sorting each row's (partner, min) contributions and summing runs
      (``csr_matrix.sum_duplicates``): cost proportional to the contributions
      only, which wins at large N, where a row reaches a few hundred partners
      out of a million and a dense row would be almost all zeros.
    """
    n = vq.shape[0]
    plan = _PairPlan.build(vq)
    per_row = float(plan.row_work[-1]) / max(n, 1)
    if rows is not None and not 0 <= rows.start <= rows.stop <= n:
        raise ValueError(f"rows must be a range within [0, N={n}], found {rows!r}")
    if n <= _DENSE_COST_RATIO * per_row:
        return _dense_reduce(vq, plan, max_distance, rows)
    return _sorted_reduce(vq, plan, max_distance, rows)


def _dense_reduce(
    vq: sp.csr_matrix, plan: _PairPlan, max_distance: float, rows: range | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = vq.shape[0]
    counts = np.diff(plan.row_ptr)
    row_of = np.repeat(np.arange(n, dtype=plan.itype), counts)
    # float32 row sums accumulated like the pair minima (min(v, v) = v), so two
    # bitwise-equal rows (duplicate samples) get distance exactly 0
    rowsum = torch.zeros(n, dtype=torch.float32)
    rowsum.index_add_(0, torch.from_numpy(row_of.astype(np.int64)), torch.from_numpy(plan.data))
    rowsum = rowsum.numpy()
    rs_min = float(rowsum.min())
    keep_frac = (1.0 - max_distance) / (2.0 - max_distance) * (1.0 - 1e-4)
    rows_per_block = max(1, _BUFFER_ELEMS // n)
    buf = torch.zeros(rows_per_block * n, dtype=torch.float32)  # reused, re-zeroed
    out_p, out_g, out_d = [], [], []
    for r0, r1, partners, mins in plan.blocks(rows_per_block, rows):
        e0, e1 = int(plan.row_ptr[r0]), int(plan.row_ptr[r1])
        keys = np.repeat((row_of[e0:e1] - r0).astype(np.int64) * n, plan.reps[e0:e1])
        keys += partners
        block = buf[: (r1 - r0) * n]
        block.index_add_(0, torch.from_numpy(keys), torch.from_numpy(mins))
        del keys, mins, partners
        flat = block.numpy()
        if max_distance < 1.0:
            # d <= t  <=>  m >= (1 - t) / (2 - t) * (|V_p| + |V_g|). Every row of V (and
            # so of its query expansion) sums to 1, so one scalar bound from the smallest
            # row sums is nearly tight; it is loosened by 1e-4 and the exact float32 test
            # below decides.
            bound = max(keep_frac * (float(rowsum[r0:r1].min()) + rs_min), 1e-30)
            hit = np.flatnonzero(flat >= bound)
        else:
            hit = np.flatnonzero(flat)
        m = flat[hit]
        block.zero_()
        p = hit // n + r0
        g = hit % n
        den = rowsum[p] + rowsum[g]
        den -= m
        d = np.clip(1.0 - m / den, 0.0, 1.0).astype(np.float32)
        keep = d <= max_distance
        out_p.append(p[keep])
        out_g.append(g[keep])
        out_d.append(d[keep])
    return _concat(out_p, out_g, out_d)


def _sorted_reduce(
    vq: sp.csr_matrix, plan: _PairPlan, max_distance: float, rows: range | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = vq.shape[0]
    # float64 sums: each side is then exact to ~1e-16, whatever order the sort leaves
    rowsum = np.add.reduceat(plan.data.astype(np.float64), plan.row_ptr[:-1])
    rowsum[np.diff(plan.row_ptr) == 0] = 0.0
    out_p, out_g, out_d = [], [], []
    for r0, r1, partners, mins in plan.blocks(n, rows):
        indptr = plan.row_work[r0 : r1 + 1] - plan.row_work[r0]
        block = sp.csr_matrix((mins.astype(np.float64), partners, indptr), shape=(r1 - r0, n))
        del partners, mins
        block.sum_duplicates()
        p = np.repeat(np.arange(r0, r1, dtype=np.int64), np.diff(block.indptr))
        g = block.indices.astype(np.int64)
        m = block.data
        d = np.clip(1.0 - m / (rowsum[p] + rowsum[g] - m), 0.0, 1.0)
        keep = d <= max_distance
        out_p.append(p[keep])
        out_g.append(g[keep])
        out_d.append(d[keep].astype(np.float32))
    return _concat(out_p, out_g, out_d)


def _concat(
    p: list[np.ndarray], g: list[np.ndarray], d: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not p:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    return np.concatenate(p), np.concatenate(g), np.concatenate(d)
