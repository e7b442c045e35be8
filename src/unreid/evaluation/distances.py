"""Query-gallery distances a block of rows at a time, on the features' device.

Shared by the streaming evaluator and re-ranking, which both need the (Q, G)
squared Euclidean distances without ever holding them whole; computed the way
`unreid.evaluation.dense.pairwise_distance` does (norms plus -2<q, g>, clipped
at 0) so that equal inputs give equal distances.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

_CHUNK_ELEMS = 1 << 24  # default distance entries per chunk (64 MB of float32)
_ROW_BLOCK = 4096  # feature rows per block in elementwise passes over the features

Features = np.ndarray | torch.Tensor


def default_chunk_size(num_gallery: int) -> int:
    """Query rows per chunk so that one chunk of distances holds about 16M entries."""
    return max(1, _CHUNK_ELEMS // max(1, num_gallery))


def as_features(x: Features, name: str, device: torch.device | str | None) -> torch.Tensor:
    """(N, D) float32 tensor on ``device`` (default: where ``x`` already is).

    Checked for finiteness a block of rows at a time, so no (N, D) temporary is made.
    """
    if isinstance(x, torch.Tensor):
        t = x.detach()
        if t.is_complex() or t.dtype == torch.bool:
            raise ValueError(f"{name} must be real numeric, found dtype {t.dtype}")
    else:
        arr = np.asarray(x)
        if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
            raise ValueError(f"{name} must be real numeric, found dtype {arr.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if t.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N, D), found shape {tuple(t.shape)}")
    if t.shape[0] == 0 or t.shape[1] == 0:
        raise ValueError(f"{name} must be non-empty, found shape {tuple(t.shape)}")
    t = t.to(device=device if device is not None else t.device, dtype=torch.float32).contiguous()
    for r0 in range(0, t.shape[0], _ROW_BLOCK):
        if not bool(torch.isfinite(t[r0 : r0 + _ROW_BLOCK]).all()):
            raise ValueError(f"{name} contains NaN or infinite values")
    return t


def squared_norms(x: torch.Tensor) -> torch.Tensor:
    """Row sums of x * x, computed a block of rows at a time to avoid an (N, D) temporary."""
    return torch.cat([(b * b).sum(1) for b in torch.split(x, _ROW_BLOCK)])


def check_chunk(chunk_size: int | None, num_gallery: int) -> int:
    """Rows per chunk: ``chunk_size`` checked, or `default_chunk_size` when None."""
    if chunk_size is None:
        return default_chunk_size(num_gallery)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)):
        raise ValueError(f"chunk_size must be a positive integer or None, found {chunk_size!r}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, found {chunk_size}")
    return int(chunk_size)


def check_same_dim(q: torch.Tensor, g: torch.Tensor) -> None:
    """Fail early, naming the inputs, rather than with a matrix-product shape error."""
    if q.shape[1] != g.shape[1]:
        raise ValueError(
            f"qf and gf must have the same feature dimension, found {q.shape[1]} and {g.shape[1]}"
        )


def distance_chunks(
    q: torch.Tensor, g: torch.Tensor, chunk_size: int
) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield (first row, (c, G) squared Euclidean distances) for c <= chunk_size query rows.

    The gallery is never copied; each block is on the features' device.
    """
    check_same_dim(q, g)
    g_sq = squared_norms(g)[None, :]
    for r0 in range(0, q.shape[0], chunk_size):
        qc = q[r0 : r0 + chunk_size]
        dist = (qc * qc).sum(1, keepdim=True) + g_sq
        dist.addmm_(qc, g.T, alpha=-2.0)
        yield r0, dist.clamp_(min=0.0)
