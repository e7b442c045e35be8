"""Thumbnails as inline JPEG data URIs: what keeps the report one file of bounded size."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from unreid.data.decode import to_rgb
from unreid.report.html import data_uri

THUMB_HEIGHT = 128  # re-ID crops are ~2:1; larger ones are shrunk, smaller kept as they are


def thumbnail_uri(path: str | Path, height: int = THUMB_HEIGHT) -> str | None:
    """`path` as a JPEG data URI no taller than `height`; None if it cannot be read.

    An unreadable image becomes a visible placeholder in the page instead of failing
    the whole report (a run's images may have moved since training).
    """
    try:
        with Image.open(path) as img:
            rgb = to_rgb(img, str(path))
    except (OSError, ValueError):
        return None
    if rgb.height > height:
        width = max(1, round(rgb.width * height / rgb.height))
        rgb = rgb.resize((width, height), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    rgb.save(buf, format="JPEG", quality=85)
    return data_uri("image/jpeg", buf.getvalue())
