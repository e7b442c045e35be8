"""Mixed-domain steps: a source batch stacked on a target batch, indexed source first."""

from __future__ import annotations

import torch

from unreid.data.domain_batches import MixedDomainBatches, single_domain


def batches(first: int, count: int, size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    out = []
    for b in range(count):
        idx = torch.arange(first + b * size, first + (b + 1) * size)
        out.append((idx.float().view(-1, 1), idx))
    return out


def test_single_domain_marks_no_source_rows() -> None:
    steps = list(single_domain(batches(0, 3, 4)))
    assert len(steps) == 3
    for (images, indexes, source_count), (img, idx) in zip(steps, batches(0, 3, 4), strict=True):
        assert source_count == 0
        assert torch.equal(images, img) and torch.equal(indexes, idx)


def test_mixed_steps_put_source_first_and_offset_target_indexes() -> None:
    source, target = batches(0, 3, 2), batches(0, 3, 4)
    mixed = MixedDomainBatches(source, target, source_size=100)
    steps = list(mixed)
    assert len(mixed) == len(steps) == 3
    for (images, indexes, source_count), (s_img, s_idx), (t_img, t_idx) in zip(
        steps, source, target, strict=True
    ):
        assert source_count == 2
        assert torch.equal(images, torch.cat([s_img, t_img]))
        assert indexes[:2].tolist() == s_idx.tolist()
        assert indexes[2:].tolist() == (t_idx + 100).tolist()


def test_mixed_steps_stop_with_the_shorter_domain() -> None:
    mixed = MixedDomainBatches(batches(0, 5, 2), batches(0, 2, 2), source_size=10)
    assert len(mixed) == 2 and len(list(mixed)) == 2
