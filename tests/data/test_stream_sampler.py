"""StreamPKSampler: the reference's stream of identities, a lone image giving one slot."""

from __future__ import annotations

import numpy as np
import pytest

from unreid.config import load_config
from unreid.data.stream_sampler import StreamPKSampler
from unreid.distributed import DistContext
from unreid.engine.loop import loader_plan
from unreid.errors import ConfigError

K = 4
# 3 clusters (6, 3 and 5 images: one needs repeats), 5 one-image classes, 2 outliers
LABELS = [0] * 6 + [1] * 3 + [2] * 5 + [3, 4, 5, 6, 7] + [-1, -1]
CAMERAS = [i % 3 for i in range(len(LABELS))]
PASS = 3 * K + 5  # images one pass writes out: K per cluster, one per lone image


def groups(stream: list[int]) -> list[list[int]]:
    """The stream split where the label changes (one identity never follows itself)."""
    out: list[list[int]] = []
    for i in stream:
        if out and LABELS[out[-1][0]] == LABELS[i]:
            out[-1].append(i)
        else:
            out.append([i])
    return out


def check_pass_prefix(stream: list[int]) -> None:
    """Every identity at most once; a lone image alone, a cluster's K images its own."""
    parts = groups(stream)
    labels = [LABELS[g[0]] for g in parts]
    assert len(labels) == len(set(labels)), f"an identity twice in one pass: {labels}"
    for g in parts[:-1]:  # the last group may be cut by the dropped tail
        assert len(g) == (1 if LABELS.count(LABELS[g[0]]) == 1 else K), g
    assert all(LABELS[i] >= 0 for i in stream), "outliers are never drawn"


@pytest.mark.parametrize("batch_size", [4, 8, 12])
def test_each_pass_is_cut_into_whole_batches_and_its_tail_dropped(batch_size):
    full = PASS // batch_size  # batches per pass
    sampler = StreamPKSampler(LABELS, CAMERAS, K, batch_size, iterations=3 * full, seed=5)
    batches = list(sampler)
    assert len(batches) == 3 * full and all(len(b) == batch_size for b in batches)
    for p in range(3):
        check_pass_prefix([i for b in batches[p * full : (p + 1) * full] for i in b])
        # the pass keeps all but its tail: every lone image is in it unless cut off
        seen = {LABELS[i] for b in batches[p * full : (p + 1) * full] for i in b}
        assert len(seen) >= 8 - (PASS - full * batch_size)


def test_a_cluster_draws_from_its_own_images_preferring_other_cameras():
    sampler = StreamPKSampler(LABELS, CAMERAS, K, 4, iterations=40, seed=1)
    for b in sampler:
        for g in groups(b):
            label = LABELS[g[0]]
            members = [i for i, y in enumerate(LABELS) if y == label]
            assert set(g) <= set(members)
            if len(g) == K and len(members) >= K:  # enough images: no repeats
                assert len(set(g)) == K


def test_a_pass_shorter_than_a_batch_continues_into_the_next():
    sampler = StreamPKSampler(LABELS, CAMERAS, K, 32, iterations=5, seed=0)
    batches = list(sampler)
    assert len(batches) == 5 and all(len(b) == 32 for b in batches)


def test_the_stream_depends_on_seed_and_epoch_only():
    def stream(seed, epoch):
        s = StreamPKSampler(LABELS, CAMERAS, K, 8, iterations=6, seed=seed)
        s.set_epoch(epoch)
        return list(s)

    assert stream(3, 1) == stream(3, 1)
    assert stream(3, 1) != stream(3, 2) and stream(3, 1) != stream(4, 1)


def test_lone_images_take_one_slot_where_pk_gives_k():
    """The share of a batch that clusters get: the reason the option exists (SpCL)."""
    labels = [0] * 8 + list(range(1, 41))  # one cluster of 8, 40 lone images
    cams = [i % 2 for i in range(len(labels))]
    from unreid.data.samplers import PKSampler

    def cluster_share(cls) -> float:
        batches = list(cls(labels, cams, K, 16, iterations=200, seed=0))
        drawn = np.array([labels[i] for b in batches for i in b])
        return float(np.mean(drawn == 0))

    # a pass: 44 images of which K are the cluster's; P x K: 1 identity in 41 per slot
    assert cluster_share(StreamPKSampler) == pytest.approx(K / 44, abs=0.02)
    assert cluster_share(PKSampler) == pytest.approx(1 / 41, abs=0.01)


def test_pk_stream_is_refused_under_ddp():
    cfg = load_config("demo", ["train.sampler=pk_stream"])
    assert loader_plan(cfg, DistContext()).sampler == "pk_stream"
    with pytest.raises(ConfigError, match="train.sampler='pk_stream'.*torchrun"):
        loader_plan(cfg, DistContext(rank=0, world_size=2))
