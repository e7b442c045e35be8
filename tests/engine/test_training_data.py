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
