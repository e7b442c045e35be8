"""ProxyBalancedSampler: P distinct camera-aware proxies × K images per batch, as CAP draws."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from unreid.data.proxy_sampler import ProxyBalancedSampler


def _dataset(seed: int = 0, num_ids: int = 10, outliers: int = 8):
    """Clusters of 1..num_ids images on up to 3 cameras, plus outliers, shuffled."""
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


def _proxies(labels, cams) -> set[tuple[int, int]]:
    return {(lab, cam) for lab, cam in zip(labels, cams, strict=True) if lab >= 0}


def test_batches_are_p_distinct_proxies_of_k_images_each():
    labels, cams = _dataset()
    sampler = ProxyBalancedSampler(labels, cams, num_instances=4, batch_size=16, iterations=12)
    batches = list(sampler)
    assert len(sampler) == 12 and len(batches) == 12
    for batch in batches:
        assert len(batch) == 16 and all(isinstance(i, int) for i in batch)
        groups = [batch[j : j + 4] for j in range(0, 16, 4)]
        keys = []
        for group in groups:
            # each group of K: one proxy, i.e. one cluster seen by one camera, no outlier
            group_keys = {(labels[i], cams[i]) for i in group}
            assert len(group_keys) == 1
            (key,) = group_keys
            assert key[0] >= 0
            keys.append(key)
        assert len(set(keys)) == 4  # P distinct proxies


def test_proxies_split_clusters_by_camera():
    labels = [0, 0, 0, 0, 1, 1, 1, 1]
    cams = [0, 0, 1, 1, 0, 0, 0, 0]
    sampler = ProxyBalancedSampler(labels, cams, num_instances=2, batch_size=6, iterations=4)
    assert sampler.num_proxies == 3 and sampler.proxies_per_batch == 3
    for batch in sampler:
        drawn = Counter((labels[i], cams[i]) for i in batch)
        assert drawn == {(0, 0): 2, (0, 1): 2, (1, 0): 2}  # cluster 0 is two proxies


def test_a_pass_visits_every_proxy_once_and_drops_the_short_tail():
    labels, cams = _dataset(num_ids=9, outliers=0)
    n = len(_proxies(labels, cams))
    p = 3
    per_pass = n // p
    sampler = ProxyBalancedSampler(labels, cams, 2, 2 * p, iterations=2 * per_pass, seed=5)
    keys = [(labels[b[j]], cams[b[j]]) for b in sampler for j in range(0, 2 * p, 2)]
    first, second = keys[: per_pass * p], keys[per_pass * p :]
    for one_pass in (first, second):
        assert len(set(one_pass)) == len(one_pass) == per_pass * p  # no proxy twice
        assert len(_proxies(labels, cams) - set(one_pass)) == n - per_pass * p  # tail dropped


def test_every_proxy_is_drawn_equally_often_whatever_its_size():
    # 12 proxies of 1..23 images (6 clusters x 2 cameras); P = 3 tiles a pass in 4 batches
    labels, cams = [], []
    for proxy in range(12):
        size = 2 * proxy + 1
        labels += [proxy // 2] * size
        cams += [proxy % 2] * size
    sampler = ProxyBalancedSampler(labels, cams, 2, 6, iterations=40, seed=2)  # 10 passes
    drawn = Counter((labels[b[j]], cams[b[j]]) for b in sampler for j in range(0, 6, 2))
    assert set(drawn) == _proxies(labels, cams)
    assert set(drawn.values()) == {10}


def test_small_proxies_repeat_their_images_large_ones_do_not():
    labels = [0] * 6 + [1] * 2 + [2]
    cams = [0] * 9
    sampler = ProxyBalancedSampler(labels, cams, num_instances=4, batch_size=4, iterations=60)
    sizes = {0: set(), 1: set(), 2: set()}
    for batch in sampler:
        label = labels[batch[0]]
        if label == 0:
            assert len(set(batch)) == 4  # at least K images: K distinct ones
        sizes[label].update(batch)
        assert all(labels[i] == label for i in batch)
    assert sizes == {0: set(range(6)), 1: {6, 7}, 2: {8}}


def test_fewer_proxies_than_a_batch_holds_fill_it_from_consecutive_passes():
    labels, cams = [0, 0, 1, 1], [0, 0, 0, 0]
    sampler = ProxyBalancedSampler(labels, cams, num_instances=2, batch_size=6, iterations=4)
    for batch in sampler:
        assert len(batch) == 6
        assert sorted(Counter(labels[i] for i in batch).values()) in ([2, 4], [4, 2])


def test_stream_depends_on_seed_and_epoch_only():
    labels, cams = _dataset()

    def draw(seed: int, epoch: int) -> list[list[int]]:
        sampler = ProxyBalancedSampler(labels, cams, 4, 16, 10, seed=seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert draw(1, 3) == draw(1, 3)  # a resumed run replays the epoch
    sampler = ProxyBalancedSampler(labels, cams, 4, 16, 10, seed=1)
    sampler.set_epoch(3)
    assert list(sampler) == list(sampler)  # iterating again replays too
    assert draw(1, 3) != draw(1, 4) and draw(1, 3) != draw(2, 3)


def test_works_as_a_dataloader_batch_sampler():
    labels, cams = _dataset()
    sampler = ProxyBalancedSampler(labels, cams, 4, 8, iterations=3)
    loader = DataLoader(torch.arange(len(labels)), batch_sampler=sampler)
    assert len(loader) == 3
    assert [b.tolist() for b in loader] == list(sampler)


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"labels": [0, 1], "cameras": [0]}, ValueError, "same length"),
        ({"labels": [[0, 1]], "cameras": [[0, 1]]}, ValueError, "labels must be a 1-D"),
        ({"labels": [0.5, 1.0]}, TypeError, "labels must hold integers"),
        ({"cameras": [0.5, 1.0]}, TypeError, "cameras must hold integers"),
        ({"labels": [-2, 0]}, ValueError, "labels must be cluster ids >= 0 or -1"),
        ({"labels": [-1, -1]}, ValueError, "at least one non-outlier"),
        ({"num_instances": 0}, ValueError, "num_instances must be a positive int"),
        ({"batch_size": True}, ValueError, "batch_size must be a positive int"),
        ({"iterations": 0}, ValueError, "iterations must be a positive int"),
        ({"batch_size": 3}, ValueError, "batch_size must be a multiple of num_instances=2"),
        ({"seed": -1}, ValueError, "seed must be a non-negative int"),
    ],
)
def test_bad_input_errors_name_the_argument(kwargs, error, pattern):
    args = {
        "labels": [0, 1],
        "cameras": [0, 1],
        "num_instances": 2,
        "batch_size": 4,
        "iterations": 1,
        **kwargs,
    }
    with pytest.raises(error, match=pattern):
        ProxyBalancedSampler(**args)


def test_set_epoch_rejects_a_bad_epoch():
    sampler = ProxyBalancedSampler([0, 1], [0, 0], 1, 2, 1)
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="epoch must be a non-negative int"):
            sampler.set_epoch(bad)


def test_ddp_shares_are_whole_proxies_that_tile_the_batch():
    """RankBatches cuts each batch in contiguous shares; proxies are K contiguous images."""
    from unreid.distributed import DistContext, RankBatches

    labels, cams = _dataset(seed=4)
    sampler = ProxyBalancedSampler(labels, cams, 4, 16, iterations=6, seed=9)
    shares = [list(RankBatches(sampler, DistContext(rank=r, world_size=2), 4)) for r in (0, 1)]
    for whole, first, second in zip(sampler, *shares, strict=True):
        assert first + second == whole and len(first) == len(second) == 8
        for share in (first, second):
            for j in range(0, 8, 4):
                assert len({(labels[i], cams[i]) for i in share[j : j + 4]}) == 1
