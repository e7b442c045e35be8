"""Contact sheets of the last epoch's pseudo identities, and the cluster-size histogram.

With unlabelled footage there is no mAP to read; the way to judge the
clustering is to look at it: does each pseudo identity show one person, across
cameras? Clusters are sampled across the size range (largest to smallest), so
both the merged giants and the fragments show. Where true identities exist, each
row also gives its purity (share of the most common identity) and frames the
members of that identity green, the others red.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from unreid.data.samples import camera_name
from unreid.report.html import data_uri, esc, figure, missing, strip, thumb
from unreid.report.images import thumbnail_uri
from unreid.report.plots import histogram_png

__all__ = ["ClusterView", "cluster_views", "contact_sheets_html", "purity", "read_pseudo_labels"]

SHEET_CLUSTERS, SHEET_MEMBERS = 12, 10


@dataclass(frozen=True)
class ClusterView:
    label: int
    members: list[int]  # every member's index, in dataset order
    shown: list[int]  # the members on the sheet (evenly spread over `members`)
    majority: int | None  # most common true id (None: unlabelled)
    purity: float | None  # share of `majority` among the members


def purity(ids: list[int]) -> tuple[int, float]:
    """(most common id, its share); ties go to the smaller id so the result is stable."""
    counts = Counter(ids)
    best = min(counts, key=lambda i: (-counts[i], i))
    return best, counts[best] / len(ids)


def _spread(n: int, k: int) -> list[int]:
    """`min(k, n)` indices evenly spread over range(n), first and last included."""
    return sorted({int(round(x)) for x in np.linspace(0, n - 1, min(k, n))}) if n else []


def cluster_views(
    labels: list[int],
    true_ids: list[int] | None,
    clusters: int = SHEET_CLUSTERS,
    members: int = SHEET_MEMBERS,
) -> list[ClusterView]:
    """A sample of `clusters` pseudo identities spread over the sizes, largest first."""
    arr = np.asarray(labels)
    by_label: dict[int, list[int]] = {}
    for i, lab in enumerate(arr.tolist()):
        if lab >= 0:
            by_label.setdefault(lab, []).append(i)
    ordered = sorted(by_label, key=lambda lab: (-len(by_label[lab]), lab))
    out = []
    for pos in _spread(len(ordered), clusters):
        lab = ordered[pos]
        idx = by_label[lab]
        shown = [idx[p] for p in _spread(len(idx), members)]
        major, share = purity([true_ids[i] for i in idx]) if true_ids is not None else (None, None)
        out.append(ClusterView(lab, idx, shown, major, share))
    return out


def read_pseudo_labels(path: Path) -> dict[str, Any] | str:
    """The recorder's payload, or why it cannot be used (a line for the page)."""
    if not path.is_file():
        return f"No contact sheets: {path.name} does not exist (no epoch has clustered yet)."
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        return f"No contact sheets: {path.name} is not readable JSON ({err})."
    need = ("paths", "cameras", "labels")
    if not isinstance(data, dict) or any(not isinstance(data.get(k), list) for k in need):
        return f"No contact sheets: {path.name} lacks one of the lists {', '.join(need)}."
    n = len(data["labels"])
    true_ids = data.get("true_ids")
    if len(data["paths"]) != n or len(data["cameras"]) != n or (true_ids and len(true_ids) != n):
        return f"No contact sheets: the lists in {path.name} have different lengths."
    names = data.get("camera_names")
    if names is not None and not (
        isinstance(names, list) and all(isinstance(x, str) for x in names)
    ):
        data["camera_names"] = None  # not what the recorder writes: the cameras show as numbers
    return data


def contact_sheets_html(run_dir: Path) -> tuple[str, str]:
    """(contact sheets body, histogram body) of the section, each with its missing notes."""
    data = read_pseudo_labels(run_dir / "pseudo_labels.json")
    if isinstance(data, str):
        return missing(data), missing(data.replace("contact sheets", "cluster-size histogram"))
    labels, paths, cams = data["labels"], data["paths"], data["cameras"]
    names = data.get("camera_names")
    true_ids = data.get("true_ids") or None
    sizes = sorted(Counter(x for x in labels if x >= 0).values())
    outliers = sum(1 for x in labels if x < 0)
    views = cluster_views(labels, true_ids)
    head = (
        f"<p>Epoch {esc(data.get('epoch', '?'))}: {len(labels)} training images, "
        f"{len(sizes)} pseudo identities, {outliers} outliers. "
        f"{len(views)} clusters sampled from the largest to the smallest, up to "
        f"{SHEET_MEMBERS} members each."
        + (
            " Purity: share of the most common true identity (green: it, red: others).</p>"
            if true_ids
            else " No ground truth: judge by eye whether each row shows one person.</p>"
        )
    )
    rows = []
    for view in views:
        ncams = len({cams[i] for i in view.members})
        label = f"<b>cluster {view.label}</b><br>{len(view.members)} images, {ncams} camera(s)"
        if view.purity is not None:
            label += f"<br>purity {100 * view.purity:.0f}% (id {esc(view.majority)})"
        if len(view.members) > len(view.shown):
            label += f"<br>{len(view.shown)} of {len(view.members)} shown"
        cells = []
        for i in view.shown:
            kind = "" if true_ids is None else ("ok" if true_ids[i] == view.majority else "bad")
            caption = camera_name(cams[i], names) + (
                "" if true_ids is None else f" id {true_ids[i]}"
            )
            cells.append(thumb(thumbnail_uri(paths[i]), caption, kind, paths[i]))
        rows.append(strip(label, cells))
    if outliers:
        out_idx = [i for i, x in enumerate(labels) if x < 0]
        picked = [out_idx[p] for p in _spread(len(out_idx), SHEET_MEMBERS)]
        cells = [
            thumb(thumbnail_uri(paths[i]), camera_name(cams[i], names), "", paths[i])
            for i in picked
        ]
        rows.append(strip(f"<b>outliers</b><br>{outliers} images (label -1)", cells))
    sheets = head + ("".join(rows) if sizes else missing("Every image is an outlier: no cluster."))
    if not sizes:
        return sheets, missing("No cluster-size histogram: the last epoch formed no cluster.")
    title = f"epoch {data.get('epoch', '?')}: {len(sizes)} clusters, {outliers} outliers"
    hist = figure(data_uri("image/png", histogram_png(sizes, title)), "cluster-size histogram")
    stats = (
        f"<p>sizes: min {sizes[0]}, median {float(np.median(sizes)):g}, max {sizes[-1]}; "
        f"outlier ratio {100 * outliers / len(labels):.1f}%</p>"
    )
    return sheets, hist + stats
