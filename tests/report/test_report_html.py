"""The run report's content: ranked lists as the protocol ranks, contact sheets, missing parts."""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from unreid.data.datasets import load_dataset
from unreid.evaluation.dense import evaluate_ranking, pairwise_distance
from unreid.report import write_report
from unreid.report.clusters import cluster_views, purity
from unreid.report.rankings import pick_queries, rank_queries
from unreid.report.runlog import read_log

# both report modules' tests on one xdist worker: conftest's demo-like run trains once
pytestmark = pytest.mark.xdist_group("report")


def brute_ranking(dist_row, q, gallery):
    """The protocol from its definition: drop same id + same camera and junk, sort by distance."""
    kept = [
        j
        for j in range(len(gallery))
        if not (gallery[j].pid == q.pid and gallery[j].camera == q.camera) and gallery[j].pid >= 0
    ]
    return sorted(kept, key=lambda j: (dist_row[j], j)), len(gallery) - len(kept)


def test_rank_queries_follow_the_protocol_and_the_evaluator(tiny_synthetic):
    ds = load_dataset("synthetic", tiny_synthetic)
    gen = torch.Generator().manual_seed(0)
    feats = torch.nn.functional.normalize(
        torch.randn(len(ds.query) + len(ds.gallery), 8, generator=gen)
    )
    qf, gf = feats[: len(ds.query)], feats[len(ds.query) :]
    dist = pairwise_distance(qf, gf)
    ranked = rank_queries(dist, ds.query, ds.gallery, top=10)
    for r, q in zip(ranked, ds.query, strict=True):
        order, excluded = brute_ranking(dist[r.query], q, ds.gallery)
        assert [j for j, _, _ in r.top] == order[:10]
        assert [ok for _, ok, _ in r.top] == [ds.gallery[j].pid == q.pid for j in order[:10]]
        assert r.excluded == excluded
    metrics = evaluate_ranking(
        dist,
        [s.pid for s in ds.query],
        [s.pid for s in ds.gallery],
        [s.camera for s in ds.query],
        [s.camera for s in ds.gallery],
    )
    valid = [r for r in ranked if r.ap is not None]
    assert len(valid) == metrics.num_valid_queries
    assert np.mean([r.ap for r in valid]) == pytest.approx(metrics.mAP, abs=1e-12)
    assert np.mean([r.first_match == 1 for r in valid]) == pytest.approx(metrics.rank1)


def test_query_sample_is_fixed_and_bounded():
    assert pick_queries(100, 8) == pick_queries(100, 8)
    picked = pick_queries(100, 8)
    assert len(set(picked)) == 8 and picked == sorted(picked) and max(picked) < 100
    assert pick_queries(5, 8) == [0, 1, 2, 3, 4]


def test_cluster_views_spread_over_sizes_with_purity():
    sizes = {0: 12, 1: 3, 2: 7, 3: 5, 4: 9}
    labels = [lab for lab, n in sizes.items() for _ in range(n)] + [-1, -1]
    true_ids = [i % 4 if lab == 0 else 9 for i, lab in enumerate(labels)]
    views = cluster_views(labels, true_ids, clusters=3, members=4)
    assert [v.label for v in views] == [0, 2, 1]  # largest, middle, smallest
    for v in views:
        members = [i for i, lab in enumerate(labels) if lab == v.label]
        assert v.members == members and set(v.shown) <= set(members) and len(v.shown) <= 4
        counts = Counter(true_ids[i] for i in members)
        assert v.purity == max(counts.values()) / len(members)
    assert purity([3, 1, 1, 3]) == (1, 0.5)  # a tie goes to the smaller id
    assert all(v.purity is None for v in cluster_views(labels, None))


def _strips(page: str, section: str) -> list[str]:
    body = re.search(rf'<section id="{section}">(.*?)</section>', page, re.S).group(1)
    return body.split('<div class="strip">')[1:]


def test_report_of_a_demo_like_run(demo_run, demo_report):
    path, seconds = demo_report
    page = path.read_text()
    print(f"report: {path.stat().st_size} bytes, built in {seconds:.1f} s")
    assert 'class="failed"' not in page
    assert path.stat().st_size < 3 * 2**20  # bounded: a sample, not every query
    assert page.count('alt="') == page.count("<img")
    curves = re.search(r'<section id="curves">(.*?)</section>', page, re.S).group(1)
    assert curves.count("<img") == 6  # retrieval, clusters, outliers, ARI/NMI, losses, lr
    ranked = _strips(page, "ranked")
    assert len(ranked) == 8
    for strip in ranked:
        qid, qcam = map(int, re.search(r"query id (\d+)</b>, camera (\d+)", strip).groups())
        hits = re.findall(r'class="thumb (ok|bad)".*?>(\d+): id (-?\d+) c(\d+)<', strip)
        assert [int(h[1]) for h in hits] == list(range(1, 11))
        for frame, _, pid, cam in hits:
            assert (frame == "ok") == (int(pid) == qid)
            assert not (int(pid) == qid and int(cam) == qcam)  # excluded by the protocol
    labels = json.loads((demo_run / "pseudo_labels.json").read_text())
    clusters = _strips(page, "clusters")
    n_clusters = len({x for x in labels["labels"] if x >= 0})
    outliers = labels["labels"].count(-1)
    assert len(clusters) == min(12, n_clusters) + (1 if outliers else 0)
    for strip in clusters:
        m = re.search(r"cluster (\d+)</b><br>(\d+) images.*?purity (\d+)%", strip)
        if m is None:
            assert "outliers" in strip
            continue
        members = [i for i, x in enumerate(labels["labels"]) if x == int(m.group(1))]
        assert int(m.group(2)) == len(members)
        share = Counter(labels["true_ids"][i] for i in members).most_common(1)[0][1]
        assert int(m.group(3)) == round(100 * share / len(members))
    assert '<section id="sizes">' in page and "cluster-size histogram" in page


def test_report_says_what_is_missing(demo_run, tmp_path):
    run = tmp_path / "partial"
    run.mkdir()
    shutil.copy(demo_run / "config.yaml", run / "config.yaml")
    lines = (demo_run / "log.jsonl").read_text().splitlines()
    (run / "log.jsonl").write_text("\n".join(lines[:2]) + "\n" + lines[2][: len(lines[2]) // 2])
    page = write_report(run).read_text()
    assert 'class="failed"' not in page
    assert "line 3 is not complete JSON" in page
    assert "no checkpoint (best.pth / last.pth)" in page
    assert "pseudo_labels.json does not exist" in page
    assert "1 of 2 epochs recorded" in page

    empty = tmp_path / "empty"
    empty.mkdir()
    page = write_report(empty).read_text()
    assert "config.yaml is missing" in page and "log.jsonl does not exist yet" in page
    with pytest.raises(FileNotFoundError, match="nowhere"):
        write_report(tmp_path / "nowhere")


def test_report_when_the_dataset_moved(demo_run, tmp_path):
    run = tmp_path / "moved"
    shutil.copytree(demo_run, run, ignore=shutil.ignore_patterns("*.pth", "report.html"))
    cfg = (run / "config.yaml").read_text()
    root = re.search(r"root: (.*)", cfg).group(1)
    (run / "config.yaml").write_text(cfg.replace(root, str(tmp_path / "gone")))
    labels = json.loads((run / "pseudo_labels.json").read_text())
    labels["paths"] = [p.replace(root, str(tmp_path / "gone")) for p in labels["paths"]]
    (run / "pseudo_labels.json").write_text(json.dumps(labels))
    page = write_report(run).read_text()
    assert "is not on disk here" in page and 'class="failed"' not in page
    sheets = re.search(r'<section id="clusters">(.*?)</section>', page, re.S).group(1)
    assert "<img" not in sheets and sheets.count('class="gone"') >= 10  # placeholders


def test_read_log_keeps_the_last_record_per_epoch(tmp_path):
    log = tmp_path / "log.jsonl"
    rows = [{"epoch": 1, "clusters": 5}, {"epoch": 2, "clusters": 6}, {"epoch": 2, "clusters": 7}]
    log.write_text("\n".join(json.dumps(r) for r in rows) + "\n[1, 2]\n")
    parsed = read_log(log)
    assert [r["clusters"] for r in parsed.records] == [5, 7]
    assert parsed.series("clusters") == ([1, 2], [5.0, 7.0])
    assert parsed.problems == ["log.jsonl line 4 has no epoch number (skipped)"]
    assert read_log(Path(tmp_path / "none.jsonl")).records == []
