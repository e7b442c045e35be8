"""The data of a run: hold-out, splits, image checks, the decoded cache."""

from __future__ import annotations

import pytest
import torch

from unreid.config import load_config
from unreid.data.decoded_cache import CachedImages
from unreid.engine.training_data import load_training_data


def test_training_data_holds_out_identities(tiny_synthetic):
    cfg = load_config("demo", [f"data.root={tiny_synthetic}", "data.holdout_ids=4"])
    data = load_training_data(cfg)
    held = {s.pid for s in data.val_query + data.val_gallery}
    assert len(held) == 4 and not held & {s.pid for s in data.train}
    assert data.eval_splits == ["test", "val"] and data.true_ids == [s.pid for s in data.train]
    assert data.cameras.tolist() == [s.camera for s in data.train]
    assert data.split("test") == (data.dataset.query, data.dataset.gallery)
    assert data.source is None and len(data.images) == len(data.train)


def test_decoded_cache_feeds_uint8_images_and_a_batch_augment(tiny_synthetic):
    cfg = load_config(
        "demo", [f"data.root={tiny_synthetic}", "data.height=32", "data.width=16",
                 "data.decoded_cache=true", "data.device_augment=true"]
    )  # fmt: skip
    data = load_training_data(cfg)
    assert isinstance(data.images, CachedImages) and data.augment is not None
    image, index = data.images[3]
    assert image.dtype == torch.uint8 and image.shape == (3, 32, 16) and index == 3
    out = data.augment(torch.stack([image, image]), torch.Generator().manual_seed(0))
    assert out.dtype == torch.float32 and out.shape == (2, 3, 32, 16)


def test_cache_over_budget_is_refused_by_key(tiny_synthetic):
    cfg = load_config(
        "demo",
        [f"data.root={tiny_synthetic}", "data.decoded_cache=true", "data.decoded_cache_gb=0.0001"],
    )
    with pytest.raises(ValueError, match="data.decoded_cache_gb"):
        load_training_data(cfg)


def write_footage(root, cameras: dict[str, int], height: int, width: int):
    """`cameras[name]` random crops of height x width in each camera folder."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for name, count in cameras.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def footage_config(root, tmp_path, *extra: str):
    own = ["data.dataset=folder", f"data.root={root}", "eval.select_best_on=none"]  # walkthrough
    return load_config("demo", [f"out_dir={tmp_path}", *own, *extra])


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]


def test_crops_far_below_the_input_size_are_a_warning_naming_both(tmp_path, caplog):
    root = write_footage(tmp_path / "crops", {"cam1": 3, "cam2": 3}, height=40, width=20)
    with caplog.at_level("INFO", logger="unreid"):
        load_training_data(footage_config(root, tmp_path))  # the demo's 128x64 input
    (warning,) = [w for w in warnings_of(caplog) if "small" in w]
    assert "median crop 40x20" in warning and "over 6 images" in warning
    assert "data.height x data.width = 128x64" in warning
    caplog.clear()
    with caplog.at_level("INFO", logger="unreid"):  # half the input in both: no warning
        load_training_data(footage_config(root, tmp_path, "data.height=80", "data.width=40"))
    assert warnings_of(caplog) == []


def test_a_single_camera_is_a_warning_saying_what_it_costs(tmp_path, caplog):
    from unreid.distributed import DistContext
    from unreid.engine.setup import build_run, check_cameras

    root = write_footage(tmp_path / "crops", {"カメラ 2": 6}, height=128, width=64)
    cfg = footage_config(root, tmp_path, "data.height=64", "data.width=32")
    with caplog.at_level("INFO", logger="unreid"):
        data = load_training_data(cfg)
        method = build_run(cfg, data, DistContext()).method  # Cluster Contrast: trains on
    (warning,) = warnings_of(caplog)
    assert "single camera (カメラ 2)" in warning and "cross-camera signal" in warning
    assert str(root) in warning
    caplog.clear()
    two = load_training_data(
        footage_config(write_footage(tmp_path / "two", {"a": 2, "b": 2}, 64, 32), tmp_path)
    )
    with caplog.at_level("INFO", logger="unreid"):
        check_cameras(method, two.train, two.dataset)
    assert warnings_of(caplog) == []
