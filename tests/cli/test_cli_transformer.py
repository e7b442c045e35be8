"""A trained transformer through every tool: best.pth / last.pth, both exports, `unreid eval`,
`extract`, `search` and the report, with the camera ids a camera embedding needs.

One tiny run (2-block ViT-Ti, TransReID's camera embedding, 1 epoch at 64x32) serves all.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from tiny_runs import TINY_RUN
from unreid.checkpoint import load_checkpoint
from unreid.cli import main
from unreid.config import load_config
from unreid.data.datasets import load_dataset
from unreid.engine import evaluate_samples, train
from unreid.export import onnx_features
from unreid.inference import load_model
from unreid.models import vit as vit_module
from unreid.search import load_features

CAMERA_ERROR = r"has a camera embedding \(3 training cameras\): {} needs each image's camera"


@pytest.fixture(scope="module", autouse=True)
def two_blocks():
    """Every transformer built in this module (training, load_model, eval) has 2 blocks."""
    with pytest.MonkeyPatch.context() as patch:
        for name, spec in list(vit_module.VIT_SPECS.items()):
            patch.setitem(vit_module.VIT_SPECS, name, replace(spec, depth=2))
        yield


@pytest.fixture(scope="module")
def run(tiny_synthetic, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("vit_run")
    vit = ["model.arch=vit_tiny", "model.pretrained=none", "model.camera_embedding=all_tokens"]
    size = ["data.height=64", "data.width=32", f"data.root={tiny_synthetic}"]
    budget = ["train.device=cpu", "train.epochs=1", "train.iters=2"]
    args = [*TINY_RUN, *size, *vit, *budget, f"out_dir={out}", "name=vit"]
    return Path(train(load_config("demo", args), progress=False)["run_dir"])


@pytest.fixture(scope="module")
def dataset(tiny_synthetic):
    return load_dataset("synthetic", tiny_synthetic)


@pytest.fixture(scope="module")
def photos(dataset, tmp_path_factory) -> tuple[Path, list[int]]:
    """6 gallery images copied to a folder, and their dataset cameras (0..2)."""
    out = tmp_path_factory.mktemp("vit_photos")
    picked = dataset.gallery[::7][:6]
    assert len({Path(s.path).name for s in picked}) == 6
    for s in picked:
        shutil.copy(s.path, out / Path(s.path).name)
    cams = [s.camera for s in sorted(picked, key=lambda s: Path(s.path).name)]
    assert len(set(cams)) > 1
    return out, cams


def test_best_last_and_exports_embed_alike(run, dataset, tmp_path, capsys):
    assert load_checkpoint(run / "best.pth")["state"]["epoch"] == 1  # best = last: 1 epoch
    query = dataset.query[:6]
    paths, cams = [s.path for s in query], [s.camera for s in query]
    best = load_model(run / "best.pth", device="cpu")
    want = best.embed(paths, cams)
    assert torch.equal(load_model(run / "last.pth", device="cpu").embed(paths, cams), want)
    with pytest.raises(ValueError, match="best.pth has a camera embedding.*3 training cameras"):
        best.embed(paths)
    for fmt in ("safetensors", "onnx"):
        out = tmp_path / f"m.{fmt}"
        command = ["export", "--checkpoint", str(run / "last.pth"), "--format", fmt]
        assert main([*command, "--out", str(out)]) == 0
        diff = re.search(r"max \|export - torch\| = (\S+)", capsys.readouterr().out).group(1)
        assert float(diff) <= 1e-4  # the command's own check, on cameras 0, 1, 2
    assert torch.equal(
        load_model(tmp_path / "m.safetensors", device="cpu").embed(paths, cams), want
    )
    got = onnx_features(tmp_path / "m.onnx", best.preprocess(paths), cams)
    assert np.abs(got - want.numpy()).max() <= 1e-4


def test_eval_checkpoint_scores_what_embed_ranks(run, dataset, capsys):
    """`unreid eval` passes every image's camera: its mAP is the one the run recorded and
    the one `embed` with the dataset's cameras gives."""
    assert main(["eval", "--checkpoint", str(run / "best.pth")]) == 0
    printed = re.search(r"mAP (\S+)\s+R1 (\S+)", capsys.readouterr().out).groups()
    recorded = load_checkpoint(run / "best.pth")["scores"]["test"]
    shown = dataset.query + dataset.gallery
    feats = load_model(run / "best.pth", device="cpu").embed(
        [s.path for s in shown], [s.camera for s in shown]
    )
    q = len(dataset.query)
    metrics = evaluate_samples(feats[:q], feats[q:], dataset.query, dataset.gallery)
    for value in (recorded["mAP"], metrics.mAP):
        assert printed[0] == f"{100 * value:.1f}"
    assert printed[1] == f"{100 * metrics.rank1:.1f}"


def test_extract_takes_camera_indices_from_a_csv_or_the_command(run, photos, tmp_path, capsys):
    folder, cams = photos
    files = sorted(folder.glob("*.jpg"))
    base = ["extract", "--checkpoint", str(run / "best.pth"), "--no-progress", "--device", "cpu"]
    assert main([*base, "--images", str(folder), "--out", str(tmp_path / "f.npy")]) == 2
    assert re.search(CAMERA_ERROR.format("extract"), capsys.readouterr().err)
    listed = [*cams[:-1], None]  # the last row leaves its camera to --camera
    csv = tmp_path / "list.csv"
    rows = [f"{f},{'' if c is None else c}\n" for f, c in zip(files, listed, strict=True)]
    csv.write_text("path,camera_index\n" + "".join(rows))
    out = tmp_path / "f.safetensors"
    assert main([*base, "--images", str(csv), "--out", str(out), "--camera", "2"]) == 0
    fs = load_features(out)
    expected = [*cams[:-1], 2]
    assert fs.meta["cameras"] == expected
    want = load_model(run / "best.pth", device="cpu").embed(files, expected).numpy()
    assert np.allclose(fs.features, want, atol=1e-5)
    csv.write_text("path,camera_index\n" + f"{files[0]},c1\n")
    assert main([*base, "--images", str(csv), "--out", str(out)]) == 2
    assert "list.csv:2: camera_index 'c1' is not a camera index" in capsys.readouterr().err


def test_search_with_cameras_finds_each_query_and_reindexes_on_new_cameras(
    run, photos, tmp_path, capsys
):
    folder, cams = photos
    files = sorted(folder.glob("*.jpg"))
    ckpt = str(run / "best.pth")
    index = ["--index", str(tmp_path / "index"), "--no-progress", "--top", "3"]
    copy = tmp_path / "query.jpg"  # outside the gallery: a gallery file is left out of its hits
    copy.write_bytes(files[1].read_bytes())
    query = ["--query", str(copy)]
    base = ["search", "--checkpoint", ckpt, *index, *query]
    assert main([*base, "--gallery", str(folder)]) == 2
    assert re.search(CAMERA_ERROR.format("the query"), capsys.readouterr().err)
    csv = tmp_path / "gallery.csv"
    csv.write_text(
        "path,camera_index\n" + "".join(f"{f},{c}\n" for f, c in zip(files, cams, strict=True))
    )
    seen_as = ["--query-camera", str(cams[1])]  # the query as the gallery saw it: itself first
    assert main([*base, "--gallery", str(csv), *seen_as]) == 0
    out = capsys.readouterr().out
    assert "gallery index built: 6 images" in out
    rank, score, path = re.findall(r"^\s+(\d+)\s+([-\d.]+)\s+(\S+)$", out, re.M)[0]
    assert (rank, path) == ("1", str(files[1])) and float(score) == pytest.approx(1, abs=1e-4)
    for camera, what in (("0", "built"), ("0", "reused"), ("1", "built")):
        assert main([*base, "--gallery", str(folder), "--camera", camera]) == 0
        assert f"gallery index {what}: 6 images" in capsys.readouterr().out


def test_report_ranks_the_test_split_with_the_cameras(run):
    from unreid.report import write_report

    page = write_report(run).read_text()
    assert "could not be built" not in page
    assert "ranked by <code>best.pth</code>" in page
