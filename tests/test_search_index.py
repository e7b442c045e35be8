"""Image lists, feature files and the gallery index: reused until the gallery or model changes."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from unreid.checkpoint import save_checkpoint
from unreid.config import load_config
from unreid.inference import load_model
from unreid.models.reid_model import build_model
from unreid.search import (
    FeatureSet,
    GalleryIndex,
    fingerprint,
    image_cameras,
    list_images,
    load_features,
    read_image_list,
    save_features,
)


@pytest.fixture(scope="module")
def embedder(tmp_path_factory):
    cfg = load_config("demo", ["data.height=64", "data.width=32"])
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("search") / "best.pth"
    save_checkpoint(path, model=build_model(cfg.model).state_dict(), config=cfg.to_dict())
    return load_model(path, device="cpu")


@pytest.fixture
def gallery(tiny_synthetic, tmp_path) -> Path:
    out = tmp_path / "gallery"
    for i, src in enumerate(sorted((tiny_synthetic / "bounding_box_test").glob("*.jpg"))[:12]):
        (out / f"cam{i % 2}").mkdir(parents=True, exist_ok=True)
        shutil.copy(src, out / f"cam{i % 2}" / src.name)
    return out


def test_list_images_of_a_folder_and_a_csv(gallery, tmp_path):
    (gallery / "notes.txt").write_text("not an image")
    (gallery / ".hidden").mkdir()
    shutil.copy(next(gallery.rglob("*.jpg")), gallery / ".hidden" / "x.jpg")
    found = list_images(gallery)
    assert found == sorted(p.resolve() for p in gallery.glob("cam*/*.jpg")) and len(found) == 12
    csv = tmp_path / "list.csv"
    rel = [p.relative_to(tmp_path) for p in found[:3]]
    csv.write_text("path,camera\n" + "".join(f"{p},c1\n" for p in rel))
    assert list_images(csv) == found[:3]
    csv.write_text(f"{rel[0]}\nmissing.jpg\n")
    with pytest.raises(FileNotFoundError, match=r"list.csv: 1 listed image.*missing.jpg"):
        list_images(csv)
    csv.write_text(f"{rel[0]}\nnotes.txt\n")
    with pytest.raises(ValueError, match=r"list.csv:2: 'notes.txt' is not an image"):
        list_images(csv)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        list_images(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="no images"):
        list_images(_empty(tmp_path))


def test_a_csv_camera_index_column_gives_each_images_camera(gallery, tmp_path):
    """Only a column headed camera_index is read (a label column such as the folder
    dataset's path,camera is not an index); an empty cell leaves the image to --camera."""
    found = list_images(gallery)[:3]
    csv = tmp_path / "list.csv"
    csv.write_text("path,note,camera_index\n" + f"{found[0]},a,2\n{found[1]},b,\n{found[2]},c,0\n")
    listing = read_image_list(csv)
    assert listing.files == found and listing.cameras == [2, None, 0]
    assert read_image_list(gallery).cameras is None
    csv.write_text(f"path,camera\n{found[0]},1\n")
    assert read_image_list(csv).cameras is None
    csv.write_text(f"path,camera_index\n{found[0]},cam1\n")
    with pytest.raises(ValueError, match=r"list.csv:2: camera_index 'cam1' is not a camera index"):
        read_image_list(csv)
    ckpt = next(gallery.rglob("*.jpg"))  # any file stands in for the checkpoint
    assert fingerprint(found, ckpt) == fingerprint(found, ckpt, None)
    assert fingerprint(found, ckpt, [0, 1, 2]) != fingerprint(found, ckpt, [0, 1, 1])


def test_image_cameras_fill_in_the_default_or_say_what_is_missing():
    camera_model = SimpleNamespace(num_cameras=3, source="best.pth")
    assert image_cameras(camera_model, 3, [2, None, 0], default=1) == [2, 1, 0]
    assert image_cameras(camera_model, 2, None, default=0) == [0, 0]
    needs = r"best.pth has a camera embedding \(3 training cameras\): the gallery needs"
    with pytest.raises(ValueError, match=needs + r" .*\(0\.\.2\) and 1 of 3 image\(s\) have none"):
        image_cameras(camera_model, 3, [2, None, 0], what="the gallery")
    plain = SimpleNamespace(num_cameras=0, source="best.pth")
    assert image_cameras(plain, 3, [2, None, 0]) is None  # ignored: features do not use them


def _empty(tmp_path: Path) -> Path:
    (tmp_path / "empty").mkdir(exist_ok=True)
    return tmp_path / "empty"


@pytest.mark.parametrize("suffix", [".npy", ".safetensors"])
def test_feature_files_round_trip(tmp_path, suffix):
    fs = FeatureSet(["a.jpg", "b.jpg"], np.arange(6, dtype=np.float32).reshape(2, 3), {"k": 1})
    written = save_features(tmp_path / f"f{suffix}", fs)
    back = load_features(written[0])
    assert back.files == fs.files and back.meta == fs.meta
    assert np.array_equal(back.features, fs.features)
    with pytest.raises(ValueError, match=r"must end in \.npy or \.safetensors, found '\.csv'"):
        save_features(tmp_path / "f.csv", fs)
    with pytest.raises(ValueError, match="2 files"):
        FeatureSet(["a.jpg", "b.jpg"], np.zeros((3, 2), dtype=np.float32))


def test_index_is_reused_then_rebuilt_when_something_changes(embedder, gallery, tmp_path):
    index_dir = tmp_path / "index"
    first, built = GalleryIndex.open(gallery, embedder, index_dir, progress=False)
    assert built and len(first.features.files) == 12

    class NoEmbedding:  # a reused index must not embed the gallery again
        source, preprocessing, num_cameras = embedder.source, embedder.preprocessing, 0

        def embed(self, *args, **kwargs):
            raise AssertionError("the gallery was embedded again")

    again, built = GalleryIndex.open(gallery, NoEmbedding(), index_dir, progress=False)
    assert not built and again.features.files == first.features.files
    assert np.array_equal(again.features.features, first.features.features)

    extra = next(gallery.rglob("*.jpg"))
    shutil.copy(extra, gallery / "cam1" / "added.jpg")
    grown, built = GalleryIndex.open(gallery, embedder, index_dir, progress=False)
    assert built and len(grown.features.files) == 13
    st = extra.stat()
    os.utime(extra, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a file rewritten
    assert GalleryIndex.open(gallery, embedder, index_dir, progress=False)[1]
    ck = Path(embedder.source)
    os.utime(ck, ns=(ck.stat().st_atime_ns, ck.stat().st_mtime_ns + 10**9))  # new checkpoint
    assert GalleryIndex.open(gallery, embedder, index_dir, progress=False)[1]
    assert not GalleryIndex.open(gallery, embedder, index_dir, progress=False)[1]


def test_search_ranks_by_cosine_similarity(embedder, gallery, tmp_path):
    index, _ = GalleryIndex.open(gallery, embedder, tmp_path / "index", progress=False)
    queries = embedder.embed(list_images(gallery)[:3]).numpy()
    hits = index.search(queries, top=5)
    g = index.features.features
    for q, found in zip(queries, hits, strict=True):
        sims = g @ q
        want = sorted(range(len(g)), key=lambda j: -sims[j])[:5]
        assert [h.path for h in found] == [index.features.files[j] for j in want]
        assert [h.score for h in found] == pytest.approx([sims[j] for j in want], abs=1e-5)
        assert [h.rank for h in found] == [1, 2, 3, 4, 5]
    assert hits[0][0].score == pytest.approx(1.0, abs=1e-5)  # a gallery image finds itself
    assert len(index.search(queries[:1], top=100)[0]) == 12
    with pytest.raises(ValueError, match="top must be >= 1"):
        index.search(queries, top=0)


def test_a_query_is_left_out_of_its_own_hits(embedder, gallery, tmp_path, monkeypatch):
    index, _ = GalleryIndex.open(gallery, embedder, tmp_path / "index", progress=False)
    files = list_images(gallery)
    queries = embedder.embed(files[:2]).numpy()
    plain = index.search(queries, top=4)
    assert [h.path for h in plain[0]][0] == str(files[0])  # found itself, at similarity 1
    monkeypatch.chdir(gallery)  # the same file spelled another way: the resolved path counts
    own = [Path("cam0") / ".." / files[0].relative_to(gallery), None]
    hits = index.search(queries, top=4, exclude=own)
    assert [h.path for h in hits[0]] == [h.path for h in index.search(queries, top=5)[0][1:]]
    assert [h.rank for h in hits[0]] == [1, 2, 3, 4] and hits[1] == plain[1]  # None: all kept
    assert len(index.search(queries[:1], top=100, exclude=[files[0]])[0]) == 11
    assert index.search(queries[:1], top=4, exclude=[tmp_path / "elsewhere.jpg"]) == plain[:1]
    with pytest.raises(ValueError, match=r"exclude: expected one path \(or None\) per query"):
        index.search(queries, top=4, exclude=[files[0]])
