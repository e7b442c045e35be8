"""`search` and `extract` take training's policy for files that do not decode: `error`
(the default) names every bad file at once, `skip` leaves them out and names them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from unreid.cli import main


@pytest.fixture
def photos(tiny_synthetic, tmp_path) -> tuple[Path, list[str]]:
    """Ten crops, one of them truncated and one empty."""
    out = tmp_path / "photos"
    out.mkdir()
    for src in sorted((tiny_synthetic / "bounding_box_test").glob("*.jpg"))[:10]:
        shutil.copy(src, out / src.name)
    files = sorted(out.glob("*.jpg"))
    files[3].write_bytes(files[3].read_bytes()[:200])
    files[7].write_bytes(b"")
    return out, [files[3].name, files[7].name]


def test_search_names_every_bad_gallery_file_or_skips_them(ckpt, photos, tmp_path, capsys):
    gallery, bad = photos
    query = str(next(p for p in sorted(gallery.glob("*.jpg")) if p.name not in bad))
    args = ["search", "--checkpoint", str(ckpt), "--gallery", str(gallery), "--query", query]
    args += ["--top", "20", "--no-progress", "--index", str(tmp_path / "index")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert all(name in err for name in bad) and "--bad-images skip" in err  # both, at once
    assert main([*args, "--bad-images", "skip"]) == 0
    out, err = capsys.readouterr()
    skipped = next(line for line in out.splitlines() if "skipped 2 unreadable" in line)
    assert all(name in skipped for name in bad)
    hits = [line.split()[-1] for line in out.splitlines() if line.startswith("  ")]
    assert len(hits) == 7 and not any(Path(h).name in bad for h in hits)  # 8, less the query
    assert query not in hits
    assert err.splitlines() == ["--top 20: the gallery has only 8 images"]  # not cut silently
    assert main([*args, "--bad-images", "skip"]) == 0  # the index is reused: still said
    assert "skipped 2 unreadable" in capsys.readouterr().out


def test_extract_skips_and_names_bad_files(ckpt, photos, tmp_path, capsys):
    images, bad = photos
    out = tmp_path / "f.npy"
    args = ["extract", "--checkpoint", str(ckpt), "--images", str(images), "--out", str(out)]
    assert main([*args, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert all(name in err for name in bad)
    assert main([*args, "--no-progress", "--bad-images", "skip"]) == 0
    printed = capsys.readouterr().out
    assert "skipped 2 unreadable" in printed and all(name in printed for name in bad)
    files = json.loads(out.with_suffix(".json").read_text())["files"]
    assert len(files) == 8 and not any(Path(f).name in bad for f in files)
