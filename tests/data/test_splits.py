"""Holding identities out of a labelled training set as a small validation query/gallery."""

from __future__ import annotations

from collections import Counter

import pytest

from unreid.data.samples import Sample
from unreid.data.splits import holdout_split


def make_train() -> list[Sample]:
    """pids 1..8 in two or three cameras, pid 9 in one camera only (never eligible)."""
    train = []
    for pid in range(1, 10):
        cams = [0] * 3 if pid == 9 else [0, 0, 1, 1, 2][: 3 + pid % 3]
        train += [Sample(f"{pid}_{i}.jpg", cam, pid) for i, cam in enumerate(cams)]
    return train


def test_zero_ids_keeps_everything() -> None:
    train = make_train()
    remaining, query, gallery = holdout_split(train, 0, seed=1)
    assert remaining == train and remaining is not train
    assert query == [] and gallery == []


def test_held_identities_leave_training_and_nothing_is_lost() -> None:
    train = make_train()
    remaining, query, gallery = holdout_split(train, 3, seed=1)
    held = {s.pid for s in query + gallery}
    assert len(held) == 3 and 9 not in held
    assert held.isdisjoint({s.pid for s in remaining})
    assert Counter(remaining + query + gallery) == Counter(train)
    assert remaining == [s for s in train if s.pid not in held]  # training order kept


def test_queries_are_first_images_per_camera_with_a_cross_camera_match() -> None:
    train = make_train()
    _, query, gallery = holdout_split(train, 5, seed=2)
    first: dict[tuple[int | None, int], Sample] = {}
    for s in train:
        first.setdefault((s.pid, s.camera), s)
    keys = [(s.pid, s.camera) for s in query]
    assert len(keys) == len(set(keys))  # at most one query per (identity, camera)
    assert all(first[key] == q for key, q in zip(keys, query, strict=True))
    for q in query:
        assert any(g.pid == q.pid and g.camera != q.camera for g in gallery)
    assert {s.pid for s in query} == {s.pid for s in gallery}  # every held identity is queried


def test_query_without_a_cross_camera_gallery_image_moves_to_the_gallery() -> None:
    a1, a2, b1 = Sample("a1", 0, 1), Sample("a2", 0, 1), Sample("b1", 1, 1)
    _, query, gallery = holdout_split([a1, a2, b1], 1, seed=0)
    assert query == [b1]  # a1's only gallery partner a2 is in its own camera
    assert gallery == [a2, a1]


def test_same_seed_same_split_and_seeds_differ() -> None:
    train = make_train()
    assert holdout_split(train, 3, seed=5) == holdout_split(train, 3, seed=5)
    held = {
        seed: frozenset(s.pid for s in holdout_split(train, 3, seed=seed)[1]) for seed in range(6)
    }
    assert len(set(held.values())) > 1


def test_needs_labels_and_enough_multi_camera_identities() -> None:
    with pytest.raises(ValueError, match="needs identity labels"):
        holdout_split([Sample("x", 0), Sample("y", 1)], 1)
    with pytest.raises(ValueError, match="holdout_ids=9 but only 8 training identities"):
        holdout_split(make_train(), 9)
