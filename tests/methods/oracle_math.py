"""Plain-Python arithmetic for the independent method oracles (issue 31, item 2).

The oracles recompute a method's loss, memories or prototypes from the paper's
(or the reference code's) definition, one sample and one coordinate at a time,
so that a bug shared by the method and a vectorised test cannot cancel out.
Everything here works on lists of Python floats (double precision) and calls
neither unreid nor torch's functional API; tensors only come in through
`vec` / `rows` and go out through `close`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

Vec = list[float]


def vec(t: torch.Tensor) -> Vec:
    """A 1-d tensor as a list of floats."""
    return [float(v) for v in t.detach().double().reshape(-1)]


def rows(t: torch.Tensor) -> list[Vec]:
    """A 2-d tensor as a list of row vectors."""
    return [vec(r) for r in t.detach()]


def close(got: torch.Tensor | float, want: float | Sequence, atol: float = 1e-5) -> None:
    """The method's value (float32) against the oracle's (float64), to ~1e-5."""
    got_t = torch.as_tensor(got).detach().double()
    torch.testing.assert_close(got_t, torch.tensor(want, dtype=torch.float64), atol=atol, rtol=1e-5)


def dot(a: Vec, b: Vec) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def unit(a: Vec) -> Vec:
    n = math.sqrt(dot(a, a))
    return [x / n for x in a]


def add(a: Vec, b: Vec) -> Vec:
    return [x + y for x, y in zip(a, b, strict=True)]


def scale(s: float, a: Vec) -> Vec:
    return [s * x for x in a]


def mean_of(vectors: Sequence[Vec]) -> Vec:
    """Coordinate-wise mean (not renormalised)."""
    total = [0.0] * len(vectors[0])
    for v in vectors:
        total = add(total, v)
    return scale(1.0 / len(vectors), total)


def matvec_right(x: Vec, m: Sequence[Vec]) -> Vec:
    """Row vector times matrix: (x M)[e] = sum_c x[c] M[c][e]."""
    return [sum(x[c] * m[c][e] for c in range(len(x))) for e in range(len(m[0]))]


def linear(w: Sequence[Vec], x: Vec) -> Vec:
    """nn.Linear without bias: (W x)[o] = sum_k W[o][k] x[k]."""
    return [dot(row, x) for row in w]


def softmax(logits: Vec) -> Vec:
    top = max(logits)
    e = [math.exp(v - top) for v in logits]
    s = sum(e)
    return [v / s for v in e]


def cross_entropy(logits: Vec, target: int, smoothing: float = 0.0) -> float:
    """-sum_c q_c log p_c with q = (1 - eps) one_hot(target) + eps / C."""
    top = max(logits)
    lse = top + math.log(sum(math.exp(v - top) for v in logits))
    c = len(logits)
    return -sum(
        ((1.0 - smoothing) * (j == target) + smoothing / c) * (logits[j] - lse) for j in range(c)
    )


def contrast(
    features: Sequence[Vec],
    targets: Sequence[int],
    bank: Sequence[Vec],
    tau: float,
    smoothing: float = 0.0,
) -> float:
    """Mean over samples of CE(<q_i / |q_i|, M_c> / tau, y_i): the ClusterNCE form of Eq. 3 / 7."""
    losses = []
    for q, y in zip(features, targets, strict=True):
        u = unit(q)
        losses.append(cross_entropy([dot(u, m) / tau for m in bank], y, smoothing))
    return sum(losses) / len(losses)


def momentum_step(row: Vec, value: Vec, momentum: float) -> Vec:
    """M <- unit(momentum * M + (1 - momentum) * value); `momentum` weighs the OLD row."""
    return unit(add(scale(momentum, row), scale(1.0 - momentum, value)))


def members(targets: Sequence[int]) -> dict[int, list[int]]:
    """Batch positions of each cluster, clusters in order of first appearance."""
    out: dict[int, list[int]] = {}
    for i, y in enumerate(targets):
        out.setdefault(y, []).append(i)
    return out


def cluster_means(features: Sequence[Vec], labels: Sequence[int]) -> list[Vec]:
    """Unit mean of each cluster 0..C-1 (label -1 = outlier, left out)."""
    groups = members([y for y in labels if y >= 0])
    num = max(groups) + 1
    return [
        unit(mean_of([f for f, y in zip(features, labels, strict=True) if y == c]))
        for c in range(num)
    ]


def least_similar(sims: Sequence[float], positions: Sequence[int], k: int) -> list[int]:
    """The k positions with the lowest similarity, lowest first; ties to the earlier position."""
    return sorted(positions, key=lambda p: (sims[p], p))[:k]
