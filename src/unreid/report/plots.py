"""Static PNG plots (matplotlib's object API, no pyplot state): curves and a histogram.

PNG rather than SVG: a fixed, small size per plot whatever the number of points,
and nothing for the browser to lay out.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

__all__ = ["histogram_png", "line_png", "require_matplotlib"]

Series = tuple[Sequence[int], Sequence[float]]


def require_matplotlib() -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError as err:  # pragma: no cover - the dev environment has it
        raise ImportError(
            "the report's plots need matplotlib: pip install 'unreid[report]'"
        ) from err
    return Figure


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def line_png(
    title: str, ylabel: str, series: dict[str, Series], *, percent: bool = False, logy: bool = False
) -> bytes:
    """One panel, a line per named series over epochs (markers: evaluations are sparse)."""
    figure = require_matplotlib()
    fig = figure(figsize=(4.6, 2.9), dpi=100, layout="constrained")
    ax = fig.subplots()
    scale = 100.0 if percent else 1.0
    for name, (xs, ys) in series.items():
        ax.plot(list(xs), [scale * y for y in ys], marker="o", markersize=3, label=name)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize=8)
    return _png(fig)


def histogram_png(sizes: Sequence[int], title: str) -> bytes:
    """Cluster sizes, one bar per size up to 60 bins (wider bins beyond)."""
    figure = require_matplotlib()
    fig = figure(figsize=(4.6, 2.9), dpi=100, layout="constrained")
    ax = fig.subplots()
    low, high = min(sizes), max(sizes)
    bins: Any = [x - 0.5 for x in range(low, high + 2)] if high - low < 60 else 60
    ax.hist(list(sizes), bins=bins, color="#4a78b5", edgecolor="white")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("images per pseudo identity")
    ax.set_ylabel("clusters")
    ax.grid(alpha=0.3, axis="y")
    return _png(fig)
