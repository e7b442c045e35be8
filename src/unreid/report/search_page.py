"""The page `unreid search --html` writes: each query beside its best gallery matches.

A gallery folder laid out as training reads one (`<gallery>/<camera>/**/<image>`)
names each image's camera by its sub-folder, so a caption says `カメラ 2`, the
name its owner gave it, rather than an index; an image directly in the gallery
folder, or listed by a CSV, has no camera name and shows none.
"""

from __future__ import annotations

from pathlib import Path

from unreid.report.html import esc, page, strip, thumb
from unreid.report.images import thumbnail_uri
from unreid.search import Hit

__all__ = ["write_search_page"]


def write_search_page(
    out: str | Path, queries: list[str], hits: list[list[Hit]], gallery: str, checkpoint: str
) -> Path:
    """One self-contained file; scores are cosine similarities (1 = identical features)."""
    rows = []
    for query, found in zip(queries, hits, strict=True):
        where = camera_folder(query, gallery)
        caption = "query" + (f" {where}" if where else "")
        cells = [thumb(thumbnail_uri(query), caption, "query", query), '<div class="sep"></div>']
        for h in found:
            where = camera_folder(h.path, gallery)
            caption = f"{h.rank}: {h.score:.3f}" + (f" {where}" if where else "")
            cells.append(thumb(thumbnail_uri(h.path), caption, "", h.path))
        rows.append(strip(f"<b>{esc(Path(query).name)}</b>", cells))
    intro = (
        f"<p>Gallery <code>{esc(gallery)}</code>, model <code>{esc(checkpoint)}</code>. "
        "Captions: rank, cosine similarity and the camera (the image's sub-folder of the "
        "gallery); hover an image for its path.</p>"
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    html = page("unreid search", intro, [("results", "Results", "".join(rows))], "unreid search")
    out.write_text(html, encoding="utf-8")
    return out


def camera_folder(path: str | Path, gallery: str | Path) -> str | None:
    """The gallery sub-folder `path` lies in (its camera, as a `folder` dataset reads it).

    None for a CSV gallery, an image directly in the gallery folder, or one outside it
    (a query from elsewhere).
    """
    root = Path(gallery)
    if not root.is_dir():
        return None
    try:
        parts = Path(path).resolve().relative_to(root.resolve()).parts
    except ValueError:
        return None
    return parts[0] if len(parts) > 1 else None
