"""PKSampler: full P×K batches of distinct pseudo identities, cross-camera partners."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from unreid.data.samplers import PKSampler


def _dataset(seed=0, num_ids=12, outliers=10):
    """Identities of sizes 1..num_ids on up to 3 cameras, plus outliers, shuffled."""
    rng = np.random.default_rng(seed)
    labels, cams = [], []
    for pid in range(num_ids):
        size = pid + 1
        labels += [pid] * size
        cams += rng.integers(3, size=size).tolist()
    labels += [-1] * outliers
    cams += rng.integers(3, size=outliers).tolist()
    perm = rng.permutation(len(labels))
    return [labels[i] for i in perm], [cams[i] for i in perm]


def test_batches_are_full_distinct_identities_without_outliers():
    labels, cams = _dataset()
    sampler = PKSampler(labels, cams, num_instances=4, batch_size=16, iterations=9)
    batches = list(sampler)
    assert len(sampler) == 9 and len(batches) == 9
    for batch in batches:
        assert len(batch) == 16
        assert all(isinstance(i, int) for i in batch)
        batch_labels = [labels[i] for i in batch]
        assert -1 not in batch_labels
        counts = Counter(batch_labels)
        assert len(counts) == 4 and set(counts.values()) == {4}
        # each identity's K instances are contiguous, anchor first
        assert all(len(set(batch_labels[j : j + 4])) == 1 for j in range(0, 16, 4))


def test_identities_cycle_through_shuffled_passes():
    labels, cams = _dataset(num_ids=10, outliers=0)
    sampler = PKSampler(labels, cams, num_instances=2, batch_size=8, iterations=5)  # 20 picks
    picks = [labels[b[j]] for b in sampler for j in range(0, 8, 2)]
    assert sorted(picks[:10]) == list(range(10)) and sorted(picks[10:]) == list(range(10))


def test_partners_come_from_other_cameras_when_enough_exist():
    # every anchor has at least K-1 = 3 images of its identity on other cameras
    labels = [0] * 8 + [1] * 6
    cams = [0] * 4 + [1] * 4 + [2] * 3 + [3] * 3
    sampler = PKSampler(labels, cams, num_instances=4, batch_size=8, iterations=30)
    seen_anchor_cams = set()
    for batch in sampler:
        for j in range(0, 8, 4):
            anchor, partners = batch[j], batch[j + 1 : j + 4]
            seen_anchor_cams.add(cams[anchor])
            assert all(cams[p] != cams[anchor] for p in partners)
            assert len(set(partners)) == 3  # without replacement
    assert seen_anchor_cams == {0, 1, 2, 3}


def test_fill_from_same_camera_without_replacement_when_too_few_other_cameras():
    labels = [0] * 6
    cams = [0, 1, 1, 1, 1, 1]
    sampler = PKSampler(labels, cams, num_instances=4, batch_size=4, iterations=40)
    for batch in sampler:
        assert len(set(batch)) == 4  # n >= K: never a repeat
        if cams[batch[0]] == 1:
            assert 0 in batch[1:]  # the only other-camera image is always taken
        else:
            assert all(cams[p] == 1 for p in batch[1:])


def test_small_identities_are_sampled_with_replacement():
    labels = [0, 1, 1, 2, 2, 2]
    cams = [0, 0, 1, 0, 0, 1]
    sampler = PKSampler(labels, cams, num_instances=4, batch_size=12, iterations=10)
    for batch in sampler:
        assert len(batch) == 12
        groups = {labels[batch[j]]: batch[j : j + 4] for j in range(0, 12, 4)}
        assert groups[0] == [0, 0, 0, 0]  # a singleton contributes its image K times
        assert set(groups[1]) == {1, 2}  # every image at least once
        assert set(groups[2]) == {3, 4, 5}
        # fill prefers other cameras: anchor on cam 0 -> the extra copy is image 5
        if cams[groups[2][0]] == 0:
            assert Counter(groups[2])[5] == 2


def test_fewer_identities_than_p_still_fills_batches():
    labels, cams = [0, 0, 1, 1, 1], [0, 1, 0, 1, 2]
    sampler = PKSampler(labels, cams, num_instances=2, batch_size=8, iterations=3)
    for batch in sampler:
        assert len(batch) == 8
        assert Counter(labels[i] for i in batch) == {0: 4, 1: 4}


def test_deterministic_per_seed_and_epoch():
    labels, cams = _dataset(seed=1)
    a = PKSampler(labels, cams, num_instances=4, batch_size=16, iterations=6, seed=3)
    b = PKSampler(labels, cams, num_instances=4, batch_size=16, iterations=6, seed=3)
    assert list(a) == list(b) == list(a)
    c = PKSampler(labels, cams, num_instances=4, batch_size=16, iterations=6, seed=4)
    assert list(c) != list(a)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    b.set_epoch(1)
    assert list(a) == list(b)


def test_accepts_arrays_and_works_as_dataloader_batch_sampler():
    labels, cams = _dataset(seed=2)
    sampler = PKSampler(np.array(labels), torch.tensor(cams), 2, 8, iterations=4)
    data = torch.arange(len(labels))
    loader = DataLoader(data, batch_sampler=sampler)
    out = list(loader)
    assert len(out) == 4 and all(b.shape == (8,) for b in out)
    assert [b.tolist() for b in out] == list(sampler)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (
            {"batch_size": 10},
            ValueError,
            "batch_size must be a multiple of num_instances=4, found 10",
        ),
        ({"num_instances": 0}, ValueError, "num_instances must be a positive int, found 0"),
        ({"iterations": 0}, ValueError, "iterations must be a positive int"),
        ({"seed": -1}, ValueError, "seed must be a non-negative int"),
        ({"labels": [-1, -1, -1]}, ValueError, "at least one non-outlier"),
        ({"labels": [0, -2, 1]}, ValueError, "labels must be cluster ids >= 0 or -1"),
        ({"cameras": [0, 1]}, ValueError, "same length, found 3 and 2"),
        ({"labels": [0.0, 1.0, 1.0]}, TypeError, "labels must hold integers"),
        ({"cameras": [[0, 1, 2]]}, ValueError, "cameras must be a 1-D sequence"),
    ],
)
def test_errors(kwargs, error, match):
    args = {
        "labels": [0, 1, 1],
        "cameras": [0, 0, 1],
        "num_instances": 4,
        "batch_size": 8,
        "iterations": 2,
    } | kwargs
    with pytest.raises(error, match=match):
        PKSampler(**args)


def test_set_epoch_rejects_negative():
    sampler = PKSampler([0], [0], 1, 1, 1)
    with pytest.raises(ValueError, match="epoch must be a non-negative int, found -1"):
        sampler.set_epoch(-1)
