"""`unreid extract | search | export | report`: outputs, reuse of the index, clear errors."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from unreid.cli import main
from unreid.inference import load_model
from unreid.search import list_images, load_features


@pytest.fixture(scope="module")
def photos(tiny_synthetic, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("photos")
    for src in sorted((tiny_synthetic / "bounding_box_test").glob("*.jpg"))[:15]:
        shutil.copy(src, out / src.name)
    return out


@pytest.mark.parametrize("name", ["f.npy", "f.safetensors"])
def test_extract_writes_features_and_the_file_list(ckpt, photos, tmp_path, capsys, name):
    out = tmp_path / name
    args = ["extract", "--checkpoint", str(ckpt), "--images", str(photos), "--out", str(out)]
    assert main([*args, "--no-progress", "--device", "cpu"]) == 0
    assert "15 images -> 512-d features" in capsys.readouterr().out
    fs = load_features(out)
    files = list_images(photos)
    assert fs.files == [str(f) for f in files]
    want = load_model(ckpt, device="cpu").embed(files).numpy()
    assert np.allclose(fs.features, want, atol=1e-5)
    assert fs.meta["preprocessing"]["height"] == 64
    if name.endswith(".npy"):
        assert json.loads((tmp_path / "f.json").read_text())["files"] == fs.files


def test_extract_refuses_an_unknown_format(ckpt, photos, tmp_path, capsys):
    args = ["extract", "--checkpoint", str(ckpt), "--images", str(photos)]
    assert main([*args, "--out", str(tmp_path / "f.parquet"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "f.parquet" in err and ".npy or .safetensors" in err


def test_search_reuses_its_index_and_writes_html(ckpt, photos, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("UNREID_CACHE", str(tmp_path / "cache"))
    queries = [str(p) for p in sorted(photos.glob("*.jpg"))[:2]]
    args = ["search", "--checkpoint", str(ckpt), "--gallery", str(photos), "--query", *queries]
    html = tmp_path / "s.html"
    assert main([*args, "--top", "5", "--html", str(html), "--no-progress"]) == 0
    first = capsys.readouterr().out
    assert "gallery index built: 15 images" in first and str(tmp_path / "cache") in first
    assert main([*args, "--top", "5", "--no-progress"]) == 0
    second = capsys.readouterr().out
    assert "gallery index reused: 15 images" in second and "ms per query" in second
    for out in (first, second):
        ranked = re.findall(r"^\s+(\d+)\s+([-\d.]+)\s+(\S+)$", out, re.M)
        assert [int(r[0]) for r in ranked] == [1, 2, 3, 4, 5] * 2
        paths = [r[2] for r in ranked]  # each query is a gallery file: left out of its own hits
        assert queries[0] not in paths[:5] and queries[1] not in paths[5:]
    assert html.read_text().count("<img") == 2 * 6


def test_search_errors_name_the_culprit(ckpt, photos, tmp_path, capsys):
    args = ["search", "--checkpoint", str(ckpt), "--gallery", str(photos), "--no-progress"]
    assert main([*args, "--query", str(tmp_path / "nobody.jpg")]) == 2
    assert "nobody.jpg" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    query = str(next(photos.glob("*.jpg")))
    assert (
        main(["search", "--checkpoint", str(ckpt), "--gallery", str(empty), "--query", query]) == 2
    )
    assert f"{empty}: no images" in capsys.readouterr().err


@pytest.mark.parametrize("fmt", ["onnx", "safetensors"])
def test_export_checks_itself_against_torch(ckpt, tmp_path, capsys, fmt):
    out = tmp_path / f"model.{fmt}"
    assert main(["export", "--checkpoint", str(ckpt), "--format", fmt, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and out.is_file()
    diff = float(re.search(r"max \|export - torch\| = (\S+)", printed).group(1))
    assert diff <= 1e-4


def test_report_command_on_a_bare_run_folder(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "log.jsonl").write_text(json.dumps({"epoch": 1, "clusters": 4, "lr": 0.1}) + "\n")
    assert main(["report", str(run), "--no-progress"]) == 0
    assert f"wrote {run / 'report.html'}" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    assert "nowhere does not exist" in capsys.readouterr().err
