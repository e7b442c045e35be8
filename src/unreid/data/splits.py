"""Carving a validation split out of a labelled training set.

The reference code picks `model_best` by test mAP, which leaks test labels
into model selection. When ground truth exists for training images (real
benchmarks, our synthetic set) we can hold out a few identities instead:
they leave training entirely and form a small query/gallery of their own.
"""

from __future__ import annotations

import random
from collections import defaultdict

from unreid.data.samples import Sample


def holdout_split(
    train: list[Sample], num_ids: int, seed: int = 0
) -> tuple[list[Sample], list[Sample], list[Sample]]:
    """(remaining train, val query, val gallery).

    Query: one image per (held-out identity, camera) where the identity also
    appears under another camera, so every query has a cross-camera match.
    """
    if num_ids <= 0:
        return list(train), [], []
    if any(s.pid is None for s in train):
        raise ValueError("data.holdout_ids > 0 needs identity labels on the training images")
    by_pid: dict[int, list[Sample]] = defaultdict(list)
    for s in train:
        by_pid[s.pid].append(s)  # type: ignore[index]
    eligible = sorted(p for p, ss in by_pid.items() if len({s.camera for s in ss}) >= 2)
    if len(eligible) < num_ids:
        raise ValueError(
            f"data.holdout_ids={num_ids} but only {len(eligible)} training identities "
            "appear in two or more cameras"
        )
    held = set(random.Random(seed).sample(eligible, num_ids))
    query, gallery = [], []
    for pid in sorted(held):
        seen_cams: set[int] = set()
        for s in by_pid[pid]:
            if s.camera not in seen_cams:
                seen_cams.add(s.camera)
                query.append(s)
            else:
                gallery.append(s)
    # A query is only useful if its identity has a gallery image in another camera.
    gallery_cams = defaultdict(set)
    for s in gallery:
        gallery_cams[s.pid].add(s.camera)
    kept_query = []
    for s in query:
        if gallery_cams[s.pid] - {s.camera}:
            kept_query.append(s)
        else:
            gallery.append(s)
    remaining = [s for s in train if s.pid not in held]
    return remaining, kept_query, gallery
