"""P identities × K instances per batch, over pseudo labels, preferring cross-camera pairs.

Contrastive cluster losses need several instances of each identity in a batch,
and instances of the same person seen by different cameras are the informative
positives: same-camera pairs are often near-duplicates that share background
and lighting.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

__all__ = ["PKSampler", "checked_batch_inputs", "checked_epoch"]


class PKSampler(Sampler[list[int]]):
    """Batch sampler: `iterations` batches of P = batch_size // num_instances identities × K.

    Use as `DataLoader(dataset, batch_sampler=PKSampler(...))`; each batch is a
    list of dataset indices. Images labelled -1 (clustering outliers) are never
    drawn.

    The epoch length is a fixed number of iterations, as in the reference,
    so that an epoch costs the same and the learning-rate schedule means the
    same whatever number of clusters this epoch's clustering produced.

    Per identity, in a random order of identities: a random anchor, then K-1
    partners. Partners come from cameras other than the anchor's, without
    replacement, when there are at least K-1 of them; otherwise all of them
    are taken and the rest is filled, without replacement, from the identity's
    other same-camera images; only an identity with fewer than K images is
    sampled with replacement (every image once, then draws from its
    other-camera images, or from all its images if it has no other camera).
    Partners are shuffled, so the sequential memory update does not always
    end on a same-camera image.

    Differences from the reference `RandomMultipleGallerySampler`, on purpose:
    every batch is full (the reference emits a lone image for a one-image
    cluster, so its batches are only roughly P×K; here such an identity
    contributes its image K times); when the identity order is used up a new
    shuffled order continues the stream, and an identity already in the
    current batch is deferred so a batch holds P distinct identities whenever
    there are at least P (with fewer, identities repeat within a batch); the
    reference draws other-camera partners with replacement unless there are
    K of them, and never falls back to same-camera images when any
    other-camera image exists.

    The stream depends only on `seed` and the epoch set by `set_epoch`, so
    call `set_epoch` every epoch (as with `DistributedSampler`) and a resumed
    run replays the same batches.
    """

    groups_of_k = True  # every batch is whole runs of K: DDP ranks split it by identity

    def __init__(
        self,
        labels: Sequence[int],
        cameras: Sequence[int],
        num_instances: int,
        batch_size: int,
        iterations: int,
        seed: int = 0,
    ) -> None:
        labels_arr, cameras_arr, kept = checked_batch_inputs(
            labels, cameras, num_instances, batch_size, iterations, seed
        )

        order = kept[np.argsort(labels_arr[kept], kind="stable")]
        _, starts = np.unique(labels_arr[order], return_index=True)
        self._members: list[np.ndarray] = np.split(order, starts[1:])
        self._cameras: list[np.ndarray] = [cameras_arr[m] for m in self._members]
        self.num_instances = num_instances
        self.batch_size = batch_size
        self.iterations = iterations
        self.seed = int(seed)
        self.epoch = 0

    @property
    def num_identities(self) -> int:
        return len(self._members)

    @property
    def identities_per_batch(self) -> int:
        return self.batch_size // self.num_instances

    def set_epoch(self, epoch: int) -> None:
        """Select the stream of batches for `epoch` (must be a non-negative int)."""
        self.epoch = checked_epoch(epoch)

    def __len__(self) -> int:
        return self.iterations

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        queue: list[int] = []
        for _ in range(self.iterations):
            batch_ids: list[int] = []
            while len(batch_ids) < self.identities_per_batch:
                if not queue:
                    queue = self._refill(rng, batch_ids)
                batch_ids.append(queue.pop())
            batch: list[int] = []
            for identity in batch_ids:
                batch.extend(self._draw(rng, identity))
            yield batch

    def _refill(self, rng: np.random.Generator, in_batch: list[int]) -> list[int]:
        """A new shuffled pass over the identities, popped from the end.

        Identities already in the batch being built go to the front (popped
        last), so they are still visited in this pass but not twice in a batch.
        """
        perm = rng.permutation(self.num_identities).tolist()
        taken = set(in_batch)
        return [i for i in perm if i in taken] + [i for i in perm if i not in taken]

    def _draw(self, rng: np.random.Generator, identity: int) -> list[int]:
        members, cams = self._members[identity], self._cameras[identity]
        k, n = self.num_instances, len(members)
        anchor = int(rng.integers(n))
        others = np.delete(np.arange(n), anchor)
        cross = others[cams[others] != cams[anchor]]
        need = k - 1
        if len(cross) >= need:
            partners = rng.choice(cross, size=need, replace=False)
        elif n >= k:
            same = others[cams[others] == cams[anchor]]
            fill = rng.choice(same, size=need - len(cross), replace=False)
            partners = rng.permutation(np.concatenate([cross, fill]))
        else:
            pool = cross if len(cross) else np.arange(n)
            fill = rng.choice(pool, size=k - n, replace=True)
            partners = rng.permutation(np.concatenate([others, fill]))
        return [int(members[anchor])] + members[partners].tolist()


def checked_batch_inputs(
    labels: Sequence[int],
    cameras: Sequence[int],
    num_instances: int,
    batch_size: int,
    iterations: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A batch sampler's arguments checked once for every sampler: (labels, cameras, the
    indices of non-outliers), or an error naming the argument, what it must be and what
    was found."""
    labels_arr = _int_array(labels, "labels")
    cameras_arr = _int_array(cameras, "cameras")
    if len(labels_arr) != len(cameras_arr):
        raise ValueError(
            f"labels and cameras must have the same length, found {len(labels_arr)} "
            f"and {len(cameras_arr)}"
        )
    _check_positive_int(num_instances, "num_instances")
    _check_positive_int(batch_size, "batch_size")
    _check_positive_int(iterations, "iterations")
    if not _is_int(seed) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, found {seed!r}")
    if batch_size % num_instances:
        raise ValueError(
            f"batch_size must be a multiple of num_instances={num_instances}, found {batch_size}"
        )
    if len(labels_arr) and labels_arr.min() < -1:
        raise ValueError(
            f"labels must be cluster ids >= 0 or -1 for outliers, found {labels_arr.min()}"
        )
    kept = np.flatnonzero(labels_arr >= 0)
    if not len(kept):
        raise ValueError("labels must contain at least one non-outlier (>= 0), found none")
    return labels_arr, cameras_arr, kept


def checked_epoch(epoch: int) -> int:
    if not _is_int(epoch) or epoch < 0:
        raise ValueError(f"epoch must be a non-negative int, found {epoch!r}")
    return int(epoch)


def _is_int(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | np.integer)


def _int_array(values: Sequence[int], name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of ints, found shape {arr.shape}")
    if arr.size == 0:
        return arr.astype(np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must hold integers, found dtype {arr.dtype}")
    return arr.astype(np.int64)


def _check_positive_int(value: int, name: str) -> None:
    if not _is_int(value) or value < 1:
        raise ValueError(f"{name} must be a positive int, found {value!r}")
