"""The reference code's batches: identities in turn, a one-image class giving one image.

SpCL and Cluster Contrast draw batches with `RandomMultipleGallerySampler`: a pass
visits every identity once in a random order and writes out an anchor and K-1 partners
for it, except that an identity with a single image writes out that image alone; the
DataLoader then cuts the stream into batches (drop_last). Our `PKSampler` instead gives
every identity K slots, a single image K times. The two agree when nearly every
identity has several images (Cluster Contrast drops DBSCAN's outliers), and differ most
in SpCL, whose un-clustered images are one-image classes: hundreds of them, early in
training from random init. There a P×K batch is mostly K copies of lone images, while
the reference's stream gives each lone image one slot, so clusters keep their share.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from unreid.data.samplers import PKSampler

__all__ = ["StreamPKSampler"]


class StreamPKSampler(PKSampler):
    """Batch sampler: `iterations` batches of `batch_size` cut from a stream of identities.

    Per pass, every identity once in a new random order: one with several images gives
    an anchor and K-1 partners, drawn as `PKSampler` draws them (other cameras first);
    one with a single image gives that image once. Each pass's stream is cut into
    consecutive batches and its tail (fewer than `batch_size` images) is dropped, as the
    reference's `drop_last` loader does; passes follow each other until `iterations`
    batches are out. A batch therefore holds whole identities except at its two ends, and
    is not P×K: it cannot be split by identity across DDP ranks.

    Departure: a pass too short to fill one batch (the reference yields nothing) is
    continued by the next pass, so tiny label sets still train.

    Same arguments and determinism contract as `PKSampler` (`set_epoch` every epoch).
    """

    groups_of_k = False  # batches cut across identities: not splittable over DDP ranks

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        size, made, pending = self.batch_size, 0, []
        while True:
            pending += self._pass(rng)
            full = len(pending) // size
            for b in range(full):
                if made == self.iterations:
                    return
                yield pending[b * size : (b + 1) * size]
                made += 1
            if full:  # the pass's tail is dropped
                pending = []

    def _pass(self, rng: np.random.Generator) -> list[int]:
        stream: list[int] = []
        for identity in rng.permutation(self.num_identities).tolist():
            members = self._members[identity]
            stream += [int(members[0])] if len(members) == 1 else self._draw(rng, identity)
        return stream
