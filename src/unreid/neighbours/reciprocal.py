"""k-reciprocal sets, their expansion R*, and local query expansion (Zhong et al., CVPR 2017).

A neighbour g of p counts only if p is also among g's nearest: one-sided
neighbours are where false matches hide. The sets are computed from a ranking
(self in column 0, see `unreid.neighbours.ranking`) and the sizes are the
caller's, because the Jaccard variants and re-ranking disagree on off-by-ones.
Memory is O(N * k): everything works on (N, size) lists in bounded row chunks.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

_CHUNK_ELEMS = 1 << 22  # (row, candidate, candidate) comparisons held at once


def reciprocal_sets(ranks: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """R(p) from the first ``size`` ranking entries (self included).

    Returns the forward list (N, size) and a mask of which entries are reciprocal
    (p appears among their own first ``size`` entries).
    """
    n = ranks.shape[0]
    fwd = np.ascontiguousarray(ranks[:, :size])
    mask = np.empty(fwd.shape, dtype=bool)
    chunk = max(1, _CHUNK_ELEMS // max(1, size * size))
    for r0 in range(0, n, chunk):
        r1 = min(n, r0 + chunk)
        back = ranks[fwd[r0:r1], :size]  # (c, size, size)
        mask[r0:r1] = (back == np.arange(r0, r1)[:, None, None]).any(axis=2)
    return fwd, mask


def expanded_pairs(
    full: tuple[np.ndarray, np.ndarray], half: tuple[np.ndarray, np.ndarray], strict: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique (p, g) pairs with g in R*(p), as two int64 arrays.

    R*(p) = R(p) united with the half set of every q in R(p) that shares 2/3 of
    its members with R(p) (more than 2/3 when ``strict``); ``full`` and ``half``
    are `reciprocal_sets` results.
    """
    f_idx, f_mask = full
    h_idx, h_mask = half
    n, m = f_idx.shape
    mh = h_idx.shape[1]
    keys = []
    chunk = max(1, _CHUNK_ELEMS // max(1, m * m * mh))
    for r0 in range(0, n, chunk):
        r1 = min(n, r0 + chunk)
        fi, fm = f_idx[r0:r1], f_mask[r0:r1]
        members = np.where(fm, fi, -1)  # R(p), padded with -1
        hi, hm = h_idx[fi], h_mask[fi]  # half sets of every forward candidate q
        inside = (hi[..., None] == members[:, None, None, :]).any(axis=3) & hm
        inter = inside.sum(axis=2)
        count = hm.sum(axis=2)
        ok = 3 * inter > 2 * count if strict else 3 * inter >= 2 * count
        ok &= fm
        base = np.arange(r0, r1)[:, None] * n
        keys.append((base + fi)[fm])
        sel = ok[..., None] & hm
        keys.append((base[:, :, None] + hi)[sel])
    flat = np.unique(np.concatenate(keys))
    return flat // n, flat % n


def query_expansion(v: sp.csr_matrix, ranks: np.ndarray, k2: int) -> sp.csr_matrix:
    """Average each row of V over the first k2 entries of its ranking (self included).

    Smooths each encoding with its nearest neighbours' so that one noisy image
    does not decide its whole neighbourhood.
    """
    if k2 == 1:
        return v
    n = v.shape[0]
    cols = ranks[:, :k2]
    q = sp.csr_matrix(
        (
            np.full(cols.size, 1.0 / cols.shape[1]),
            (np.repeat(np.arange(n), cols.shape[1]), cols.ravel()),
        ),
        shape=(n, n),
    )
    return (q @ v).tocsr()
