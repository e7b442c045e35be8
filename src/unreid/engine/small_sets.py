"""DBSCAN settings for small training sets, and what to change after a degenerate clustering.

The presets' k-reciprocal settings (k1=30 neighbours, k2=6) are tuned on sets
of thousands of images. On a few dozen crops 30 neighbours are most of the set:
every image shares its neighbourhood with every other, the Jaccard distances
all come out small and one cluster holds everything, whatever `cluster.eps` is
(on 40 crops only eps 0.05 split it). So a set smaller than 8·k1 images
clusters with k1 = N/8 (at least 3; a person rarely has more crops than that
among N), k2 at most k1/2 and min_samples below k1, said once in the log. At
the sizes the presets were tuned on (k1 <= N/8) nothing changes; the saved
config keeps the values given, so a resume scales them the same way.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from unreid.settings import ClusterConfig

log = logging.getLogger("unreid")


def fit_to_set(c: ClusterConfig, n: int) -> ClusterConfig:
    """`c` with k1 / k2 / min_samples scaled to a set of `n` images where k1 > n / 8."""
    if c.method != "dbscan":
        return c
    k1 = min(c.k1, max(3, n // 8))
    if k1 == c.k1:
        return c
    fitted = replace(
        c, k1=k1, k2=min(c.k2, max(1, k1 // 2)), min_samples=min(c.min_samples, max(2, k1 - 1))
    )
    changed = [
        f"{k} {getattr(c, k)} -> {getattr(fitted, k)}"
        for k in ("k1", "k2", "min_samples")
        if getattr(c, k) != getattr(fitted, k)
    ]
    log.info(
        "%d training images, fewer than 8 x cluster.k1=%d: clustering with %s (k1 about N/8; "
        "set cluster.k1 <= %d to choose the values yourself)",
        n,
        c.k1,
        ", ".join(f"cluster.{x}" for x in changed),
        max(3, n // 8),
    )
    return fitted


def dbscan_hint(n: int, c: ClusterConfig, looser: bool) -> str:
    """Every DBSCAN knob that moves the result, with a value to try: `looser` when too many
    images are left out, else when too few clusters split."""
    if looser:
        eps = min(0.9, round(c.eps + 0.1, 2))
        return (
            f"raise cluster.eps (now {c.eps}), e.g. to {eps}, or lower cluster.min_samples "
            f"(now {c.min_samples}, e.g. {max(2, c.min_samples // 2)})"
        )
    eps = max(0.05, round(c.eps - 0.15, 2))
    return (
        f"lower cluster.eps (now {c.eps}), e.g. to {eps}, or cluster.k1 (now {c.k1}, e.g. "
        f"{max(2, c.k1 // 2)}; about N/8 = {max(1, n // 8)} for these {n} images or less) "
        f"and cluster.k2 (now {c.k2}, e.g. {max(1, c.k2 // 2)}): fewer shared neighbours "
        "split more"
    )
