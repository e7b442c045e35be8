"""ICE's camera-balanced draw: each identity's K images span its cameras first.

ICE's code (chenhao2345/ICE, `ice/utils/data/sampler.py`, `MoreCameraSampler`)
draws, for each pseudo identity, one image from every camera the identity was
seen in, then tops the K up from its other images; with more cameras than K it
keeps K of the per-camera picks. Its hard instance contrast takes the least
similar same-cluster instance as the positive, so a batch whose K images come
from as many cameras as possible gives it cross-camera positives to find.
"""

from __future__ import annotations

import numpy as np

from unreid.data.samplers import PKSampler

__all__ = ["CameraPKSampler"]


class CameraPKSampler(PKSampler):
    """`PKSampler`'s identities and batches, with ICE's per-identity draw (module doc).

    Per identity: one random image of each of its cameras (cameras in ascending id);
    if that is K or more, K of them without replacement; if fewer, the rest from the
    identity's other images, without replacement when there are enough, with
    replacement when there are some but too few, and from the per-camera picks
    themselves when there are none (an identity of a single image repeats it), as
    ICE's sampler does.
    """

    def _draw(self, rng: np.random.Generator, identity: int) -> list[int]:
        members, cams = self._members[identity], self._cameras[identity]
        k = self.num_instances
        picks = np.array([rng.choice(np.flatnonzero(cams == c)) for c in np.unique(cams)])
        if len(picks) >= k:
            chosen = rng.choice(picks, size=k, replace=False)
        else:
            others = np.setdiff1d(np.arange(len(members)), picks)
            need = k - len(picks)
            if len(others) == 0:
                chosen = rng.choice(picks, size=k, replace=True)
            else:
                fill = rng.choice(others, size=need, replace=len(others) < need)
                chosen = np.concatenate([picks, fill])
        return members[chosen].tolist()
