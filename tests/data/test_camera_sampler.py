"""ICE's camera-balanced draw (`train.sampler=pk_cameras`): every identity's K images
span its cameras first, then its other images, as ICE's `MoreCameraSampler`."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from unreid.config import load_config
from unreid.data.camera_sampler import CameraPKSampler
from unreid.data.epoch_batches import SAMPLERS

# identity 0: 4 cameras x 3 images; 1: 2 cameras x 4; 2: one camera, 5 images;
# 3: one image; 4: two images, same camera; -1: outliers, never drawn
SPEC = {0: [0, 1, 2, 3] * 3, 1: [0, 1] * 4, 2: [2] * 5, 3: [1], 4: [3, 3], -1: [0, 1, 2]}
LABELS = [i for i, cams in SPEC.items() for _ in cams]
CAMERAS = [c for cams in SPEC.values() for c in cams]


def groups(sampler: CameraPKSampler, k: int) -> list[list[int]]:
    return [b[i : i + k] for b in sampler for i in range(0, len(b), k)]


@pytest.mark.parametrize("k", [2, 4, 6])
def test_each_identitys_images_span_its_cameras_before_repeating_any(k):
    sampler = CameraPKSampler(LABELS, CAMERAS, k, 2 * k, iterations=60, seed=3)
    seen = set()
    for group in groups(sampler, k):
        (identity,) = {LABELS[i] for i in group}
        assert identity >= 0
        seen.add(identity)
        members = [i for i, label in enumerate(LABELS) if label == identity]
        cams = {CAMERAS[i] for i in members}
        assert len({CAMERAS[i] for i in group}) == min(k, len(cams)), (identity, group)
        counts = Counter(group)
        if len(members) >= k:  # enough images: none twice
            assert max(counts.values()) == 1, (identity, group)
        elif identity == 3:  # a single image: K times
            assert group == members * k
        elif identity == 4:  # one camera, two images: one pick, the other image K - 1 times
            assert sorted(counts.values()) == [1, k - 1]
    assert seen == {0, 1, 2, 3, 4}


def test_the_stream_is_a_function_of_seed_and_epoch():
    def stream(seed, epoch):
        s = CameraPKSampler(LABELS, CAMERAS, 4, 8, iterations=10, seed=seed)
        s.set_epoch(epoch)
        return list(s)

    assert stream(0, 1) == stream(0, 1)
    assert stream(0, 1) != stream(0, 2) and stream(0, 1) != stream(1, 1)


def test_the_camera_picks_are_uniform_within_each_camera():
    # identity 0, K = 4 = its camera count: each camera's three images equally likely
    sampler = CameraPKSampler(LABELS, CAMERAS, 4, 4, iterations=3000, seed=0)
    drawn = Counter(i for g in groups(sampler, 4) for i in g if LABELS[i] == 0)
    per_image = np.array([drawn[i] for i in range(12)])
    assert per_image.sum() > 2000 and per_image.min() > 0.8 * per_image.mean()


def test_it_is_the_setting_pk_cameras():
    assert SAMPLERS["pk_cameras"] is CameraPKSampler
    assert load_config(None, ["train.sampler=pk_cameras"]).train.sampler == "pk_cameras"
