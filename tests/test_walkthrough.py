"""docs/walkthrough.md, run: unlabeled camera folders -> train -> report -> search -> export.

Every ```bash and ```python block of the page runs in order, in a fresh folder
holding `crops/` (the tiny synthetic training images, renamed so that nothing
but the camera folder is left of their labels). Only the training budget is
cut: the tiny-run overrides (size, time, CPU, no network; no clustering or BatchNorm
setting) are appended to the page's `unreid train` line, so a set of 40 or 200 crops
trains on the first try (k1 scaled to the set, the preset's BN group fitted to the batch).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import pytest

from unreid.cli import main
from unreid.data.datasets import load_dataset

DOC = Path(__file__).resolve().parents[1] / "docs" / "walkthrough.md"
TINY_BUDGET = [
    "model.arch=resnet18",
    "model.pretrained=none",
    "data.height=96",
    "data.width=48",
    "data.workers=0",
    "train.batch_size=32",  # smaller than the preset's BN group of 64: one group
    "train.num_instances=4",
    "train.threads=1",
    "train.epochs=2",
    "train.iters=2",
    "train.device=cpu",
]


def doc_blocks() -> list[tuple[str, str]]:
    """(language, code) of every bash/python block, in page order."""
    return re.findall(r"```(bash|python)\n(.*?)```", DOC.read_text(), re.S)


def unlabeled_crops(labelled_root: Path, out: Path) -> None:
    """`out/cam<N>/<k>.jpg`: identities are gone, cameras stay."""
    counts: dict[int, int] = {}
    for s in load_dataset("synthetic", labelled_root).train:
        counts[s.camera] = counts.get(s.camera, 0) + 1
        target = out / f"cam{s.camera + 1}" / f"{counts[s.camera]:04d}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(s.path, target)


@pytest.mark.slow
def test_walkthrough_runs_end_to_end(tiny_synthetic, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("UNREID_CACHE", str(tmp_path / "cache"))
    unlabeled_crops(tiny_synthetic, tmp_path / "crops")
    blocks = doc_blocks()
    assert [lang for lang, _ in blocks] == ["bash"] * 4 + ["python"] * 2
    commands = [line for lang, code in blocks if lang == "bash" for line in code.splitlines()]
    outputs = {}
    for line in commands:
        argv = shlex.split(line)
        assert argv[0] == "unreid", line
        if argv[1] == "train":
            assert "data.dataset=folder" in argv and "eval.select_best_on=none" in argv
            argv += TINY_BUDGET
        assert main(argv[1:]) == 0, line
        outputs[" ".join(argv[1:3])] = capsys.readouterr().out
    run = tmp_path / "runs" / "mycams"
    assert (run / "last.pth").is_file() and not (run / "best.pth").exists()

    page = (run / "report.html").read_text()
    assert "No ranked lists" in page and "has no query/gallery split" in page
    assert 'class="failed"' not in page and "cluster contact sheets" in page.lower()
    sheets = re.search(r'<section id="clusters">(.*?)</section>', page, re.S).group(1)
    assert sheets.count('<div class="strip">') >= 2 and "purity" not in sheets
    assert sheets.count("<img") >= 8

    hits = re.findall(r"^\s+\d+\s+[-\d.]+\s+(\S+)$", outputs["search --checkpoint"], re.M)
    assert len(hits) == 10 and not any(h.endswith("cam1/0001.jpg") for h in hits)  # left out
    assert (run / "search.html").read_text().count("<img") == 11

    assert "check: max |export - torch|" in outputs["export --checkpoint"]
    assert (run / "last.onnx").is_file() and (run / "last.yaml").is_file()

    scope: dict = {}
    for lang, code in blocks:
        if lang == "python":
            exec(compile(code, str(DOC), "exec"), scope)  # the page's own code
    assert scope["features"].shape[0] == 2
    assert float(scope["similarity"][0, 0]) == pytest.approx(1.0, abs=1e-5)
    assert (
        abs(scope["onnx_features"] - scope["model"].embed(["crops/cam1/0001.jpg"]).numpy()).max()
        <= 1e-4
    )


def first_crops(labelled_root: Path, out: Path, n: int) -> None:
    """`out/cam<N>/<k>.jpg`: the first `n` crops of the training and gallery images, taken
    in turn from each of the 3 cameras."""
    ds = load_dataset("synthetic", labelled_root)
    by_cam: dict[int, list] = {}
    for s in [*ds.train, *ds.gallery]:
        by_cam.setdefault(s.camera, []).append(s)
    order = [s for group in zip(*by_cam.values(), strict=False) for s in group][:n]
    assert len(order) == n and len({s.camera for s in order}) == 3
    for k, s in enumerate(order):
        target = out / f"cam{s.camera + 1}" / f"{k:04d}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(s.path, target)


@pytest.mark.slow
@pytest.mark.parametrize("n", [40, 200])
def test_the_walkthrough_trains_a_small_folder_on_the_first_try(
    n, tiny_synthetic, tmp_path, monkeypatch, capsys
):
    """The page's `unreid train` line and the demo preset it suggests for a CPU, on 40 and
    200 crops, with the budget only: no k1 / eps / BN group / holdout setting to find."""
    monkeypatch.chdir(tmp_path)
    first_crops(tiny_synthetic, tmp_path / "crops", n)
    line = next(x for lang, code in doc_blocks() for x in code.splitlines() if " train " in x)
    budget = [*TINY_BUDGET, "train.epochs=1", "train.threads=1"]
    assert main([*shlex.split(line)[1:], *budget]) == 0
    record = json.loads((tmp_path / "runs" / "mycams" / "log.jsonl").read_text().splitlines()[-1])
    assert record["clusters"] >= 2 and record["losses"], record  # it clustered and trained
    demo = ["train", "--config", "demo", "--out", "runs/cpu", "data.dataset=folder"]
    demo += ["data.root=crops", "eval.select_best_on=none", *budget]
    assert main(demo) == 0, capsys.readouterr().err  # the demo's data.holdout_ids=10: ignored
