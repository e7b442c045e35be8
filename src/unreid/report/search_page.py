"""The page `unreid search --html` writes: each query beside its best gallery matches."""

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
        cells = [thumb(thumbnail_uri(query), "query", "query", query), '<div class="sep"></div>']
        cells += [
            thumb(thumbnail_uri(h.path), f"{h.rank}: {h.score:.3f}", "", h.path) for h in found
        ]
        rows.append(strip(f"<b>{esc(Path(query).name)}</b>", cells))
    intro = (
        f"<p>Gallery <code>{esc(gallery)}</code>, model <code>{esc(checkpoint)}</code>. "
        "Captions: rank and cosine similarity; hover an image for its path.</p>"
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    html = page("unreid search", intro, [("results", "Results", "".join(rows))], "unreid search")
    out.write_text(html, encoding="utf-8")
    return out
