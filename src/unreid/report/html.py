"""The page's building blocks: one self-contained HTML file, no script, no network.

Everything is inlined (images as data URIs, the style sheet in the head), so
the report opens from disk, survives being mailed or copied, and needs no
server. No JavaScript: the page is static, which is also why it cannot fail at
load time in a browser.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable

__all__ = [
    "data_uri",
    "esc",
    "failed",
    "figure",
    "missing",
    "page",
    "section",
    "strip",
    "table",
    "thumb",
]

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 0 auto; max-width: 1200px; padding: 1em;
       color: #222; }
h1 { font-size: 1.5em; margin-bottom: .2em; } h2 { border-bottom: 1px solid #ccc; }
nav a { margin-right: 1em; }
.missing { color: #8a5a00; background: #fff6e0; padding: .4em .6em; border-left: 4px solid #e0a000; }
.failed { color: #8b0000; background: #ffecec; padding: .4em .6em; border-left: 4px solid #c00; }
.figs { display: flex; flex-wrap: wrap; gap: 1em; }
figure { margin: 0; } figcaption { font-size: .85em; color: #555; }
.strip { display: flex; align-items: flex-start; gap: 6px; margin: .3em 0 1em; overflow-x: auto; }
.strip .label { min-width: 11em; max-width: 11em; font-size: .85em; }
.thumb { text-align: center; font-size: .75em; color: #555; }
.thumb img { height: 112px; display: block; border: 4px solid transparent; }
.thumb.query img { border-color: #2b6cb0; } .thumb.ok img { border-color: #1a9e3a; }
.thumb.bad img { border-color: #d32f2f; }
.thumb .gone { height: 112px; width: 56px; border: 4px dashed #aaa; display: flex;
               align-items: center; justify-content: center; font-size: .7em; }
.sep { width: 2px; background: #888; align-self: stretch; margin: 0 4px; }
table { border-collapse: collapse; font-size: .9em; }
td, th { border: 1px solid #ddd; padding: 2px 8px; text-align: right; }
th { background: #f4f4f4; } td:first-child, th:first-child { text-align: left; }
pre { background: #f7f7f7; padding: .6em; overflow-x: auto; font-size: .85em; }
"""


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def data_uri(mime: str, payload: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(payload).decode('ascii')}"


def missing(text: str) -> str:
    """A visible note for a part of the report that could not be shown, and why."""
    return f'<p class="missing">{esc(text)}</p>'


def failed(part: str, err: BaseException) -> str:
    return (
        f'<p class="failed">The {esc(part)} could not be built: '
        f"{esc(type(err).__name__)}: {esc(err)}</p>"
    )


def figure(uri: str, alt: str, caption: str = "") -> str:
    below = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="{uri}" alt="{esc(alt)}">{below}</figure>'


def thumb(uri: str | None, caption: str, kind: str = "", title: str = "") -> str:
    """One image with its caption; `kind` frames it (query, ok = green, bad = red).

    An image that could not be read is shown as a dashed box, never a broken <img>.
    """
    tip = f' title="{esc(title)}"' if title else ""
    body = (
        f'<img src="{uri}" alt="{esc(caption)}">' if uri else '<div class="gone">unreadable</div>'
    )
    return f'<div class="thumb {esc(kind)}"{tip}>{body}{esc(caption)}</div>'


def strip(label_html: str, cells: Iterable[str]) -> str:
    """A row of images with a label on its left (a ranked list, a cluster)."""
    return f'<div class="strip"><div class="label">{label_html}</div>{"".join(cells)}</div>'


def table(header: list[str], rows: Iterable[Iterable[object]]) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{esc(anchor)}"><h2>{esc(title)}</h2>{body}</section>'


def page(title: str, intro: str, sections: list[tuple[str, str, str]], footer: str) -> str:
    """The whole document; `sections` are (anchor, title, body html)."""
    nav = "".join(f'<a href="#{esc(a)}">{esc(t)}</a>' for a, t, _ in sections)
    parts = "".join(section(a, t, b) for a, t, b in sections)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<link rel="icon" href="data:,">'
        f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{esc(title)}</h1>{intro}<nav>{nav}</nav>{parts}"
        f'<footer><p class="foot">{esc(footer)}</p></footer></body></html>\n'
    )
