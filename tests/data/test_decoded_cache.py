"""The uint8 decode cache: the train transform's resized pixels, shared, within a budget."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms as T
from torch.utils.data import DataLoader

from unreid.data.datasets import load_dataset
from unreid.data.decoded_cache import CachedImages, DecodedCache, decoded_bytes
from unreid.data.device_augment import normalize_batch
from unreid.data.image_dataset import read_image
from unreid.data.samplers import PKSampler
from unreid.data.samples import Sample
from unreid.data.transforms import test_transform as eval_transform  # not a test

H, W = 64, 32


@pytest.fixture(scope="module")
def train(tiny_synthetic) -> list[Sample]:
    return load_dataset("market1501", tiny_synthetic).train[:40]


@pytest.fixture(scope="module")
def cache(train) -> DecodedCache:
    return DecodedCache.build(train, H, W, budget_gb=1.0)


def test_rows_are_the_resized_pixels_the_transforms_see(train, cache):
    assert cache.images.shape == (len(train), 3, H, W) and cache.images.dtype == torch.uint8
    assert len(cache) == len(train) and cache.nbytes == decoded_bytes(len(train), H, W)
    resize = T.Resize((H, W), interpolation=T.InterpolationMode.BICUBIC)
    normalize = T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    for i in (0, 17, len(train) - 1):
        img = read_image(train[i].path)
        assert img.size != (W, H)  # the source really is resized
        want = torch.from_numpy(np.array(resize(img))).permute(2, 0, 1)
        assert torch.equal(cache.images[i], want)
        # the test transform of the same image is exactly the row, scaled and normalised
        assert torch.equal(eval_transform(H, W)(img), normalize(cache.images[i].float() / 255))
        # ... which is what extraction from the cache computes on the device
        batch = normalize_batch(cache.images[i : i + 1], channels_last=True)
        assert batch.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(batch[0], eval_transform(H, W)(img))


def test_threads_decode_the_same_bytes_into_shared_memory(train, cache):
    threaded = DecodedCache.build(train, H, W, budget_gb=1.0, workers=2)
    assert torch.equal(threaded.images, cache.images)
    assert threaded.images.is_shared() and cache.images.is_shared()


def test_over_budget_is_refused_before_decoding_naming_the_key():
    market = [Sample(f"/nonexistent/{i}.jpg", 0, 1) for i in range(12_936)]
    assert decoded_bytes(len(market), 256, 128) == 12_936 * 3 * 256 * 128  # 1.27 GB
    with pytest.raises(
        ValueError,
        match=r"data.decoded_cache_gb=1: .*12,936 images at 256x128 "
        r"needs 1.27 GB.*at least 1.27",
    ):
        DecodedCache.build(market, 256, 128, budget_gb=1.0)
    with pytest.raises(OSError, match="cannot read image /nonexistent/0.jpg"):
        DecodedCache.build(market[:2], 256, 128, budget_gb=1.3)
    with pytest.raises(ValueError, match="no images"):
        DecodedCache.build([], 256, 128, budget_gb=1.0)
    with pytest.raises(ValueError, match=r"uint8 \(N, 3, H, W\) tensor, found torch.float32"):
        DecodedCache(torch.zeros(2, 3, 4, 4))


def test_pk_loader_with_persistent_pinned_prefetching_workers_gathers_the_rows(train, cache):
    labels = [s.pid for s in train]
    ids = {p: i for i, p in enumerate(sorted(set(labels)))}
    sampler = PKSampler([ids[p] for p in labels], [s.camera for s in train], 4, 16, 3, seed=0)
    loader = DataLoader(
        CachedImages(cache, train),
        batch_sampler=sampler,
        num_workers=2,
        persistent_workers=True,
        pin_memory=torch.cuda.is_available(),  # pinning needs an accelerator
        prefetch_factor=2,
    )
    batches = 0
    for _epoch in range(2):  # the workers persist across epochs
        for (images, indexes), expected in zip(loader, sampler, strict=True):
            assert images.dtype == torch.uint8 and images.shape == (16, 3, H, W)
            assert indexes.tolist() == expected
            assert torch.equal(images, cache.images[indexes])
            batches += 1
    assert batches == 6
    with pytest.raises(ValueError, match="3 samples for a cache of 40 images"):
        CachedImages(cache, train[:3])
