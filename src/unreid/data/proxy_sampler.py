"""CAP's proxy-balanced batches: P camera-aware proxies × K images of each.

CAP (Wang et al., AAAI 2021) splits every cluster by camera into proxies, one
per (pseudo identity, camera) pair, and learns against a memory of proxies.
Drawing whole identities (the P×K sampler) lets a few large, many-camera
clusters dominate the batches and leaves the proxies of small or single-camera
clusters rarely seen; drawing proxies uniformly gives every proxy, so every
memory row, the same share of the updates.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

from unreid.data.samplers import checked_batch_inputs, checked_epoch

__all__ = ["ProxyBalancedSampler"]


class ProxyBalancedSampler(Sampler[list[int]]):
    """Batch sampler: `iterations` batches of P = batch_size // num_instances proxies × K.

    A proxy is the images of one cluster seen by one camera. Images labelled -1
    (clustering outliers) are never drawn. Use as
    `DataLoader(dataset, batch_sampler=ProxyBalancedSampler(...))`; each batch is
    a list of dataset indices, each proxy's K images contiguous.

    Drawn as CAP's code draws them (`ClassUniformlySampler` over the per-camera
    proxy labels, k=4, in a DataLoader with drop_last; Terminator8758/CAP-master,
    reid/utils/data/preprocessor.py and train_cap.py):

    - a pass visits every proxy once, in a new random order, and is cut into
      consecutive batches of P proxies; the last P-1 or fewer proxies of a
      pass that cannot fill a batch are dropped, and the next pass starts a
      fresh batch, so a batch never holds a proxy twice;
    - a proxy with at least K images gives K of them, without replacement; one
      with fewer gives K draws without replacement from its images each
      repeated K times (CAP's `value * k`, shuffled, first k): images repeat,
      and not necessarily every image is drawn;
    - passes follow each other until `iterations` batches are out (CAP's
      trainer restarts its loader when it runs dry within an epoch).

    Departure, on purpose: with fewer than P proxies in all, CAP's code yields
    no batch (its loader drops the lone partial batch); here consecutive passes
    fill the batch, so proxies repeat within it.

    The stream depends only on `seed` and the epoch set by `set_epoch`, so call
    `set_epoch` every epoch and a resumed run replays the same batches.
    """

    groups_of_k = True  # every batch is whole runs of K: DDP ranks split it by proxy

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

        # proxies in (label, camera) order, each proxy's images in dataset order
        order = kept[np.lexsort((kept, cameras_arr[kept], labels_arr[kept]))]
        keys = np.stack([labels_arr[order], cameras_arr[order]], axis=1)
        _, starts = np.unique(keys, axis=0, return_index=True)
        self._members: list[np.ndarray] = np.split(order, np.sort(starts)[1:])
        self.num_instances = num_instances
        self.batch_size = batch_size
        self.iterations = iterations
        self.seed = int(seed)
        self.epoch = 0

    @property
    def num_proxies(self) -> int:
        return len(self._members)

    @property
    def proxies_per_batch(self) -> int:
        return self.batch_size // self.num_instances

    def set_epoch(self, epoch: int) -> None:
        """Select the stream of batches for `epoch` (must be a non-negative int)."""
        self.epoch = checked_epoch(epoch)

    def __len__(self) -> int:
        return self.iterations

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        for proxies in self._proxy_batches(rng):
            batch: list[int] = []
            for proxy in proxies:
                batch.extend(self._draw(rng, proxy))
            yield batch

    def _proxy_batches(self, rng: np.random.Generator) -> Iterator[list[int]]:
        """`iterations` lists of P proxy ids, cut from consecutive shuffled passes."""
        p, made = self.proxies_per_batch, 0
        if self.num_proxies < p:  # too few to fill a batch from one pass: passes run on
            stream: list[int] = []
            while made < self.iterations:
                while len(stream) < p:
                    stream.extend(rng.permutation(self.num_proxies).tolist())
                yield stream[:p]
                stream, made = stream[p:], made + 1
            return
        while True:
            order = rng.permutation(self.num_proxies).tolist()
            for start in range(0, len(order) - p + 1, p):  # the short tail is dropped
                if made == self.iterations:
                    return
                yield order[start : start + p]
                made += 1

    def _draw(self, rng: np.random.Generator, proxy: int) -> list[int]:
        members, k = self._members[proxy], self.num_instances
        if len(members) >= k:
            return members[rng.choice(len(members), size=k, replace=False)].tolist()
        return rng.permutation(np.tile(members, k))[:k].tolist()
