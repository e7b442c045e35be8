"""Neighbour rankings with one tie rule: the point itself first, then by distance, then index.

Reciprocal sets are sensitive to the order of equal distances (duplicate images,
coarse features): a different tie rule changes who is in whose top k. Every
ranking in unreid -- the dense Jaccard reference, the kNN backends, re-ranking --
therefore orders candidates with `sort_candidates` and re-ranks a row fully
when the tie at the cut-off may run past its candidates (`ambiguous_rows`).
"""

from __future__ import annotations

import numpy as np
import torch

_SIM_CHUNK_ELEMS = 1 << 24  # similarity entries held at once while ranking
_EXTRA_CANDIDATES = 8  # beyond the depth, to detect ties at the cut-off


def sort_candidates(
    vals: np.ndarray, idx: np.ndarray, *, descending: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Each row's candidates ordered by value (similarities descending), ties by lower index.

    ``torch.topk`` orders equal values arbitrarily, so its output is re-sorted here.
    """
    order = np.lexsort((idx, -vals if descending else vals), axis=-1)
    return np.take_along_axis(vals, order, axis=1), np.take_along_axis(idx, order, axis=1)


def ambiguous_rows(vals: np.ndarray, depth: int) -> np.ndarray:
    """Rows of sorted candidates whose value at the cut-off ties with the last candidate.

    Such a tie may continue past the candidates, so which tied items make the cut
    can only be decided from the complete row.
    """
    return np.nonzero(vals[:, depth - 1] == vals[:, -1])[0]


def ranked_neighbours(x: np.ndarray, depth: int) -> np.ndarray:
    """(N, depth) int64 ranking of unit rows ``x`` by cosine similarity, self in column 0.

    The exact reference ranking: chunked ``x @ x.T`` and top-k candidates, with a
    full stable sort for the rows that `ambiguous_rows` flags.
    """
    n = x.shape[0]
    depth = min(depth, n)
    cand = min(n, depth + _EXTRA_CANDIDATES)
    xt = torch.from_numpy(x)
    out = np.empty((n, depth), dtype=np.int64)
    chunk = max(1, _SIM_CHUNK_ELEMS // n)
    for r0 in range(0, n, chunk):
        r1 = min(n, r0 + chunk)
        sims = xt[r0:r1] @ xt.T
        rows = torch.arange(r1 - r0)
        sims[rows, rows + r0] = float("inf")  # self first, whatever rounding says
        vals, idx = torch.topk(sims, cand, dim=1, largest=True, sorted=True)
        vals, idx = sort_candidates(vals.numpy(), idx.numpy(), descending=True)
        out[r0:r1] = idx[:, :depth]
        if cand < n:
            ambiguous = ambiguous_rows(vals, depth)
            if ambiguous.size:
                full = -sims[torch.from_numpy(ambiguous)].numpy()
                out[r0 + ambiguous] = np.argsort(full, axis=1, kind="stable")[:, :depth]
    return out
