"""Ranked lists: a fixed sample of queries and their top gallery matches, as the protocol ranks.

mAP says how good the ranking is on average; looking at ranked lists says why
(colour, pose, camera, occlusion). The lists follow the Market protocol the
numbers use: gallery images of the query's identity seen by the query's camera,
and junk (id -1), are left out before ranking, so what is shown is what was scored.
The sample is fixed (seeded) so reports of different runs show the same queries.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from unreid.data.samples import Sample
from unreid.evaluation.dense import pairwise_distance
from unreid.report.html import esc, missing, strip, thumb
from unreid.report.images import thumbnail_uri

__all__ = ["RankedQuery", "pick_queries", "rank_queries", "ranked_lists_html"]

QUERY_SAMPLE, TOP = 8, 10


@dataclass(frozen=True)
class RankedQuery:
    query: int  # index into the query list
    top: list[tuple[int, bool, float]]  # (gallery index, true match, distance), best first
    excluded: int  # same identity + same camera, or junk: not ranked
    ap: float | None  # None: no true match in the ranked gallery (the protocol skips it)
    first_match: int | None  # 1-based rank of the first true match


def pick_queries(total: int, n: int = QUERY_SAMPLE, seed: int = 0) -> list[int]:
    """A fixed sample of `n` query indices (sorted), the same for every run on a dataset."""
    return sorted(random.Random(seed).sample(range(total), min(n, total)))


def rank_queries(
    distmat: np.ndarray, query: list[Sample], gallery: list[Sample], top: int = TOP
) -> list[RankedQuery]:
    """Each row's gallery order after the protocol's exclusions; AP as the evaluator defines it."""
    g_pids = np.array([-1 if s.pid is None else s.pid for s in gallery])
    g_cams = np.array([s.camera for s in gallery])
    out = []
    for row, q in enumerate(query):
        order = np.argsort(distmat[row], kind="stable")
        pids, cams = g_pids[order], g_cams[order]
        same = pids == q.pid
        keep = ~(same & (cams == q.camera)) & (pids >= 0)
        kept = order[keep]
        hit = same[keep]
        n_hits = int(hit.sum())
        ap = first = None
        if n_hits:
            precision = np.cumsum(hit) / np.arange(1, len(hit) + 1)
            ap = float(precision[hit].sum() / n_hits)
            first = int(np.argmax(hit)) + 1
        shown = [
            (int(j), bool(h), float(distmat[row, j]))
            for j, h in zip(kept[:top], hit[:top], strict=True)
        ]
        out.append(RankedQuery(row, shown, int((~keep).sum()), ap, first))
    return out


def pick_checkpoint(run_dir: Path) -> Path | None:
    for name in ("best.pth", "last.pth"):
        if (run_dir / name).is_file():
            return run_dir / name
    return None


def _why_no_test_split(config: dict[str, Any] | None) -> tuple[str, str] | str:
    """(dataset, root) when the config names a dataset, else why the section is empty."""
    if config is None:
        return "No ranked lists: the run has no readable config.yaml to name its dataset."
    data = config.get("data") if isinstance(config.get("data"), dict) else {}
    name, root = data.get("dataset"), data.get("root")
    if not name or not root:
        return "No ranked lists: config.yaml names no data.dataset / data.root."
    return str(name), str(root)


def ranked_lists_html(run_dir: Path, config: dict[str, Any] | None, progress: bool) -> str:
    """The section body: ranked lists, or a line saying why there are none."""
    from unreid.data.datasets import load_dataset
    from unreid.inference import load_model

    found = _why_no_test_split(config)
    if isinstance(found, str):
        return missing(found)
    name, root = found
    if not Path(root).exists():
        return missing(f"No ranked lists: the dataset folder {root} ({name}) is not on disk here.")
    dataset = load_dataset(name, root)
    if not dataset.has_test_split:
        return missing(
            f"No ranked lists: {name} at {root} has no query/gallery split (unlabelled data "
            "has no identities to score against); judge the clustering by the contact sheets."
        )
    ckpt = pick_checkpoint(run_dir)
    if ckpt is None:
        return missing("No ranked lists: no checkpoint (best.pth / last.pth) has been written yet.")
    embedder = load_model(ckpt)
    batch = int((config or {}).get("eval", {}).get("batch_size", 64))
    picked = pick_queries(len(dataset.query))
    query = [dataset.query[i] for i in picked]
    gallery = dataset.gallery
    shown = query + gallery  # the dataset's cameras: a camera-embedding model needs them
    feats = embedder.embed(
        [s.path for s in shown], [s.camera for s in shown], batch_size=batch, progress=progress
    )
    distmat = pairwise_distance(feats[: len(query)], feats[len(query) :])
    ranked = rank_queries(distmat, query, gallery)
    rows = [_query_row(r, query[r.query], gallery) for r in ranked]
    intro = (
        f"<p>{len(query)} of {len(dataset.query)} queries (a fixed sample), top {TOP} of "
        f"{len(gallery)} gallery images, ranked by <code>{esc(ckpt.name)}</code>. "
        "Green: same identity; red: another one. Gallery images of the query's identity "
        "from the query's camera, and junk images, are left out as the protocol does.</p>"
    )
    return intro + "".join(rows)


def _query_row(r: RankedQuery, q: Sample, gallery: list[Sample]) -> str:
    score = "no true match in the gallery" if r.ap is None else f"AP {100 * r.ap:.1f}"
    first = f", first match at {r.first_match}" if r.first_match else ""
    label = (
        f"<b>query id {esc(q.pid)}</b>, camera {q.camera + 1}<br>{score}{first}<br>"
        f"{r.excluded} excluded"
    )
    cells = [thumb(thumbnail_uri(q.path), "query", "query", q.path), '<div class="sep"></div>']
    for rank, (j, ok, dist) in enumerate(r.top, start=1):
        g = gallery[j]
        caption = f"{rank}: id {g.pid} c{g.camera + 1}"
        cells.append(thumb(thumbnail_uri(g.path), caption, "ok" if ok else "bad", f"d={dist:.3f}"))
    return strip(label, cells)
