import json
import re
from collections import defaultdict
from dataclasses import asdict

import numpy as np
import pytest
from PIL import Image

from unreid.data.synthetic import (
    META_FILE,
    SynthConfig,
    _query_cameras,
    generate_synthetic,
    is_generated,
)
from unreid.data.synthetic_draw import palette_swap, sample_identity

MARKET = re.compile(r"^(-?\d+)_c(\d)s(\d)_(\d{6})_(\d{2})\.(jpg)$")
SPLITS = ("bounding_box_train", "query", "bounding_box_test")
TINY = SynthConfig(ids=6, cameras=3, images_per_id_camera=(1, 3), distractors=4, seed=3)


def _listing(root):
    """{split: [(name, pid, cam)]} parsed with the Market-1501 pattern."""
    out = {}
    for split in SPLITS:
        rows = []
        for p in sorted((root / split).iterdir()):
            m = MARKET.match(p.name)
            assert m, p.name
            rows.append((p.name, int(m[1]), int(m[2])))
        out[split] = rows
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    counts = generate_synthetic(root, TINY)
    return root, counts, _listing(root)


def test_layout_counts_and_metadata(tiny):
    root, counts, files = tiny
    meta = json.loads((root / META_FILE).read_text())
    assert meta["complete"] is True
    assert meta["counts"] == counts
    assert meta["config"] == json.loads(json.dumps(asdict(TINY)))
    assert counts["train_images"] == len(files["bounding_box_train"])
    assert counts["query_images"] == len(files["query"])
    assert counts["gallery_images"] == len(files["bounding_box_test"])
    assert all(1 <= cam <= TINY.cameras for rows in files.values() for _, _, cam in rows)
    names = [n for rows in files.values() for n, _, _ in rows]
    assert len(names) == len(set(names))
    with Image.open(root / "query" / files["query"][0][0]) as im:
        assert im.format == "JPEG" and im.size == (TINY.width, TINY.height)


def test_train_and_test_identities_are_disjoint_ranges(tiny):
    _, counts, files = tiny
    train = {pid for _, pid, _ in files["bounding_box_train"]}
    test = {pid for _, pid, _ in files["query"] + files["bounding_box_test"]} - {0}
    assert train == set(range(1, 4)) and test == set(range(4, 7))
    assert counts["train_ids"] == 3 and counts["test_ids"] == 3


def test_every_query_has_a_cross_camera_match(tiny):
    _, _, files = tiny
    gallery_cams = defaultdict(set)
    for _, pid, cam in files["bounding_box_test"]:
        gallery_cams[pid].add(cam)
    seen = set()
    for _, pid, cam in files["query"]:
        assert (pid, cam) not in seen  # one query per identity and camera
        seen.add((pid, cam))
        assert gallery_cams[pid] - {cam}, f"query {pid} c{cam} has no match in another camera"
    assert {pid for pid, _ in seen} == {4, 5, 6}


def test_distractors_only_in_gallery(tiny):
    _, _, files = tiny
    assert sum(pid == 0 for _, pid, _ in files["bounding_box_test"]) == TINY.distractors
    assert all(pid != 0 for split in ("bounding_box_train", "query") for _, pid, _ in files[split])


def test_same_config_gives_identical_bytes(tiny, tmp_path):
    root, _, files = tiny
    generate_synthetic(tmp_path, TINY)
    for split, rows in files.items():
        for name, _, _ in rows:
            assert (tmp_path / split / name).read_bytes() == (root / split / name).read_bytes()
    assert sorted(p.name for p in (tmp_path / "query").iterdir()) == [
        n for n, _, _ in files["query"]
    ]


def test_cache_check_and_regeneration(tiny, tmp_path):
    root, _, _ = tiny
    assert is_generated(root, TINY)
    assert not is_generated(root, SynthConfig(**{**asdict(TINY), "seed": 4}))
    assert not is_generated(tmp_path, TINY)
    cfg = SynthConfig(ids=4, cameras=2, images_per_id_camera=(1, 1), distractors=5)
    generate_synthetic(tmp_path, cfg)
    smaller = SynthConfig(**{**asdict(cfg), "distractors": 1})
    counts = generate_synthetic(tmp_path, smaller)  # stale images of the old run are removed
    assert len(list((tmp_path / "bounding_box_test").iterdir())) == counts["gallery_images"]
    meta = json.loads((tmp_path / META_FILE).read_text())
    meta["complete"] = False
    (tmp_path / META_FILE).write_text(json.dumps(meta))
    assert not is_generated(tmp_path, smaller)


def test_refuses_foreign_folder_and_bad_config(tmp_path):
    (tmp_path / "query").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "query" / "0001_c1s1_000001_00.jpg")
    with pytest.raises(FileExistsError):
        generate_synthetic(tmp_path, TINY)
    with pytest.raises(ValueError, match="cameras"):
        generate_synthetic(tmp_path / "x", SynthConfig(cameras=10))


@pytest.mark.parametrize(
    ("counts", "queries"),
    [
        ({0: 1, 1: 1}, [1]),  # the first camera keeps its only image as the match
        ({0: 1, 2: 3, 4: 1}, [0, 4]),  # the one camera with spares gives no query
        ({0: 2, 1: 2, 2: 1}, [0, 1, 2]),
    ],
)
def test_query_cameras_keep_a_match_elsewhere(counts, queries):
    assert _query_cameras(counts) == queries


def test_palette_swap_exchanges_top_and_bottom_only():
    import numpy as np

    a = sample_identity(np.random.default_rng(0))
    b = palette_swap(a)
    assert (b.top, b.bottom) == (a.bottom, a.top)
    assert asdict(b) | {"top": a.top, "bottom": a.bottom} == asdict(a)


def test_domain_style_warms_and_darkens_every_camera(tmp_path):
    base = SynthConfig(
        ids=4, cameras=2, distractors=0, seed=5, height=32, width=16, jpeg_quality=(95, 95)
    )
    styled = SynthConfig(**{**asdict(base), "warmth": 0.3, "exposure": -0.4})

    def mean_rgb(cfg, out):
        generate_synthetic(out, cfg)
        pixels = [
            np.asarray(Image.open(p), dtype=np.float64).reshape(-1, 3)
            for p in sorted((out / "bounding_box_train").glob("*.jpg"))
        ]
        return np.concatenate(pixels).mean(axis=0)

    plain, warm = mean_rgb(base, tmp_path / "a"), mean_rgb(styled, tmp_path / "b")
    assert warm[0] / warm[2] > 1.4 * plain[0] / plain[2]  # (1.3 / 0.7) before clipping
    assert warm.mean() < 0.85 * plain.mean()  # exp(-0.4) = 0.67 before the warmth gains
    with pytest.raises(ValueError, match="warmth"):
        SynthConfig(warmth=1.0).validate()
