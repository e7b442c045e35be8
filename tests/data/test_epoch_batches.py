"""One epoch's steps: the sampler streams (seed, seed + 1 for the source, set_epoch), the
label and camera tables, source first, that the steps index into, and the plan's sampler
and epoch length."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from unreid.data.epoch_batches import (
    SAMPLERS,
    SOURCE_STREAM,
    LoaderPlan,
    epoch_batches,
    pk_loader,
)
from unreid.data.proxy_sampler import ProxyBalancedSampler
from unreid.data.samplers import PKSampler
from unreid.data.samples import Sample
from unreid.data.source_domain import SourceDomain
from unreid.settings import EPOCH_LENGTHS
from unreid.settings import SAMPLERS as SETTING_CHOICES

PLAN = LoaderPlan(num_instances=2, iters=5, seed=7, workers=0, pin_memory=False)

TARGET_LABELS = np.array([0, 0, 1, 1, 2, 2, -1, 3, 3, 1])
TARGET_CAMERAS = torch.tensor([0, 1, 0, 1, 0, 1, 0, 1, 0, 0])


class IndexImages(Dataset):
    """Stand-in images: each 'image' is its own index, so a batch shows what was drawn."""

    def __init__(self, size: int, offset: float = 0.0) -> None:
        self.size, self.offset = size, offset

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return torch.tensor([index + self.offset]), index


def make_source() -> SourceDomain:
    pids = [11, 11, 4, 4, 4, 9, 9, 30]
    samples = [Sample(f"s{i}.jpg", i % 3, pid) for i, pid in enumerate(pids)]
    _, ids = np.unique(pids, return_inverse=True)
    return SourceDomain(
        samples,
        torch.from_numpy(ids.astype(np.int64)),
        torch.tensor([s.camera for s in samples], dtype=torch.long),
        IndexImages(len(samples), offset=1000.0),  # type: ignore[arg-type]
    )


def sampler_batches(labels, cameras, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    sampler = PKSampler(labels, cameras.tolist(), 2, batch_size, 5, seed=seed)
    sampler.set_epoch(epoch)
    return list(sampler)


def test_pk_loader_seeds_by_stream_and_sets_the_epoch() -> None:
    loader = pk_loader(IndexImages(10), TARGET_LABELS, TARGET_CAMERAS, 4, PLAN, epoch=3, stream=1)
    sampler = loader.batch_sampler
    assert isinstance(sampler, PKSampler)
    assert (sampler.seed, sampler.epoch, len(sampler)) == (8, 3, 5)
    assert (loader.num_workers, loader.pin_memory) == (0, False)
    drawn = [indexes.tolist() for _, indexes in loader]
    assert drawn == sampler_batches(TARGET_LABELS, TARGET_CAMERAS, 4, seed=8, epoch=3)


def test_target_alone_is_plain_pk_batches() -> None:
    steps, label_of, camera_of = epoch_batches(
        IndexImages(10), TARGET_LABELS, TARGET_CAMERAS, None, 4, PLAN, epoch=2
    )
    expected = sampler_batches(TARGET_LABELS, TARGET_CAMERAS, 4, seed=7, epoch=2)
    drawn = []
    for images, indexes, source_count in steps:
        assert source_count == 0
        assert images.view(-1).tolist() == indexes.tolist()
        drawn.append(indexes.tolist())
    assert drawn == expected
    assert label_of.dtype == torch.long and label_of.tolist() == TARGET_LABELS.tolist()
    assert camera_of is TARGET_CAMERAS
    assert all(label_of[i] >= 0 for batch in drawn for i in batch)  # outliers never drawn


def test_adapting_stacks_a_source_half_on_a_target_half() -> None:
    source = make_source()
    n_source = len(source.samples)
    steps, label_of, camera_of = epoch_batches(
        IndexImages(10), TARGET_LABELS, TARGET_CAMERAS, source, 8, PLAN, epoch=1
    )
    source_seed = PLAN.seed + SOURCE_STREAM
    source_expected = sampler_batches(
        source.labels.numpy(), source.cameras, 4, seed=source_seed, epoch=1
    )
    target_expected = sampler_batches(TARGET_LABELS, TARGET_CAMERAS, 4, seed=7, epoch=1)
    count = 0
    for (images, indexes, source_count), s_batch, t_batch in zip(
        steps, source_expected, target_expected, strict=True
    ):
        count += 1
        assert source_count == 4 and len(indexes) == 8
        assert indexes[:4].tolist() == s_batch  # first half: source, its own indexes
        assert (indexes[4:] - n_source).tolist() == t_batch  # second half: target, offset
        assert images[:4].view(-1).tolist() == [1000.0 + i for i in s_batch]
        assert images[4:].view(-1).tolist() == [float(i) for i in t_batch]
        assert label_of[indexes[:4]].tolist() == source.labels[s_batch].tolist()  # true ids
        assert label_of[indexes[4:]].tolist() == TARGET_LABELS[t_batch].tolist()
    assert count == PLAN.iters
    assert label_of.tolist() == source.labels.tolist() + TARGET_LABELS.tolist()
    assert camera_of.tolist() == source.cameras.tolist() + TARGET_CAMERAS.tolist()


def test_same_epoch_replays_and_next_epoch_differs() -> None:
    def draw(epoch: int) -> list[list[int]]:
        steps, _, _ = epoch_batches(
            IndexImages(10), TARGET_LABELS, TARGET_CAMERAS, make_source(), 8, PLAN, epoch
        )
        return [indexes.tolist() for _, indexes, _ in steps]

    assert draw(4) == draw(4)
    assert draw(4) != draw(5)


# ------------------------------------------------ the sampler and epoch length of the plan
def test_plan_samplers_are_the_settings_choices() -> None:
    assert tuple(SAMPLERS) == SETTING_CHOICES and EPOCH_LENGTHS == ("iters", "one_pass")
    plan = LoaderPlan(2, 5, seed=7, sampler="proxy_balanced")
    loader = pk_loader(IndexImages(10), TARGET_LABELS, TARGET_CAMERAS, 4, plan, epoch=1)
    sampler = loader.batch_sampler
    assert isinstance(sampler, ProxyBalancedSampler)
    assert (sampler.seed, sampler.epoch, len(sampler)) == (7, 1, 5)
    for _, indexes in loader:  # 2 proxies x 2 images, each one (cluster, camera) pair
        for pair in indexes.view(-1, 2).tolist():
            assert len({(TARGET_LABELS[i], int(TARGET_CAMERAS[i])) for i in pair}) == 1


def test_one_pass_is_the_clustered_images_in_whole_batches_every_epoch() -> None:
    plan = LoaderPlan(2, 5, seed=7, epoch_length="one_pass")
    assert plan.steps(TARGET_LABELS, 4) == 2  # 9 clustered images // 4
    assert plan.steps([0, 0, -1, -1], 4) == 1  # fewer than a batch: still one step
    assert LoaderPlan(2, 5, seed=7).steps(TARGET_LABELS, 4) == 5  # iters: fixed
    steps, _, _ = epoch_batches(
        IndexImages(10), TARGET_LABELS, TARGET_CAMERAS, None, 4, plan, epoch=0
    )
    assert len(steps) == 2 and len(list(steps)) == 2
    fewer = np.where(np.arange(10) < 4, -1, TARGET_LABELS)  # next epoch, more outliers
    steps, _, _ = epoch_batches(IndexImages(10), fewer, TARGET_CAMERAS, None, 4, plan, epoch=1)
    assert len(steps) == len(list(steps)) == 1


def test_one_pass_adapting_is_the_target_pass_and_the_source_follows() -> None:
    plan = LoaderPlan(2, 5, seed=7, epoch_length="one_pass", sampler="proxy_balanced")
    steps, _, _ = epoch_batches(
        IndexImages(10), TARGET_LABELS, TARGET_CAMERAS, make_source(), 8, plan, epoch=0
    )
    drawn = list(steps)
    assert len(steps) == len(drawn) == 2  # 9 target images // the target half of 4
    assert all(source_count == 4 and len(idx) == 8 for _, idx, source_count in drawn)


def test_plan_rejects_unknown_sampler_and_epoch_length() -> None:
    with pytest.raises(ValueError, match="sampler must be one of pk, pk_stream, proxy_balanced"):
        LoaderPlan(2, 5, seed=7, sampler="random")
    with pytest.raises(ValueError, match="epoch_length must be 'iters' or 'one_pass'"):
        LoaderPlan(2, 5, seed=7, epoch_length="epochs")
