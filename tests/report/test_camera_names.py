"""Cameras as their owner named them: folder names on contact sheets and the search page."""

from __future__ import annotations

import json
import re
from pathlib import Path

from unreid.data.samples import ReidDataset, camera_name
from unreid.report.clusters import contact_sheets_html
from unreid.report.search_page import camera_folder, write_search_page
from unreid.search import Hit

ODD = "<b>&3"  # a legal folder name that would break the page unescaped


def captions(html: str) -> list[str]:
    """The text under each thumbnail (after its image or placeholder)."""
    return re.findall(
        r'class="thumb[^"]*"[^>]*>(?:<img [^>]*>|<div class="gone">[^<]*</div>)([^<]*)</div>', html
    )


def test_camera_name_is_the_given_name_else_the_market_number():
    assert camera_name(1, ["cam1", "カメラ 2"]) == "カメラ 2"
    assert [camera_name(i, None) for i in range(3)] == ["c1", "c2", "c3"]
    assert camera_name(5, ["cam1"]) == "c6"  # past a stale list: the number
    assert ReidDataset("x", "r", [], camera_names=["a"]).camera_name(0) == "a"


def _sheets(run_dir: Path, names: object) -> list[str]:
    payload = {
        "epoch": 3,
        "paths": [str(run_dir / f"{i}.jpg") for i in range(4)],  # not on disk: placeholders
        "cameras": [0, 1, 2, 1],
        "true_ids": None,
        "labels": [0, 0, 1, -1],
    }
    if names is not None:
        payload["camera_names"] = names
    (run_dir / "pseudo_labels.json").write_text(json.dumps(payload))
    sheets, _ = contact_sheets_html(run_dir)
    return captions(sheets)


def test_contact_sheets_show_camera_folder_names_escaped(tmp_path):
    shown = _sheets(tmp_path, ["cam1", "カメラ 2", ODD])
    assert sorted(shown) == sorted(["cam1", "カメラ 2", "&lt;b&gt;&amp;3", "カメラ 2"])
    assert ODD not in "".join(contact_sheets_html(tmp_path))


def test_contact_sheets_number_cameras_without_names(tmp_path):
    assert sorted(_sheets(tmp_path, None)) == ["c1", "c2", "c2", "c3"]  # Market-style runs
    assert sorted(_sheets(tmp_path, "not a list")) == ["c1", "c2", "c2", "c3"]


def test_search_page_names_the_gallery_camera_folders(tmp_path):
    gallery = tmp_path / "crops"
    for name in ("カメラ 2/track7/a.jpg", f"{ODD}/b.jpg", "loose.jpg"):
        (gallery / name).parent.mkdir(parents=True, exist_ok=True)
        (gallery / name).write_bytes(b"")  # placeholders: the captions are what is checked
    query = gallery / "カメラ 2" / "track7" / "a.jpg"
    assert camera_folder(query, gallery) == "カメラ 2"
    assert camera_folder(gallery / "loose.jpg", gallery) is None  # no camera folder
    assert camera_folder(tmp_path / "elsewhere.jpg", gallery) is None
    assert camera_folder(query, tmp_path / "gallery.csv") is None  # a CSV names no folders
    hits = [
        Hit(1, str(gallery / ODD / "b.jpg"), 0.9),
        Hit(2, str(gallery / "loose.jpg"), 0.5),
    ]
    out = write_search_page(tmp_path / "s.html", [str(query)], [hits], str(gallery), "m.pth")
    html = out.read_text(encoding="utf-8")
    assert captions(html) == ["query カメラ 2", "1: 0.900 &lt;b&gt;&amp;3", "2: 0.500"]
    assert ODD not in html
