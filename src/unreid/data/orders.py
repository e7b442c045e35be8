"""Orders of the training set for methods that read it as a sequence (GCL graphs).

GCL's cluster refinement cuts the ordered training set into graphs of B
consecutive images. The paper orders by image name; in Market-style names the
identity is the name's prefix, so that order puts one person's images in the
same graph: it leaks identity information a truly unlabeled set would not have.
The other orders carry no identity label:

* ``"name"``: file name (the paper; leaks identity on Market, Duke, MSMT17);
* ``"camera_frame"``: camera, then frame number (what real unlabeled footage
  has: neighbours in a camera's timeline are often the same person, as in a
  tracklet); ties in frame are broken by a seeded random key, not by name;
  needs a frame number on every sample (Market-1501 and DukeMTMC-reID names
  carry one; the synthetic set's frame numbers are per-identity indices with
  no temporal meaning);
* ``"random"``: a seeded permutation.
"""

from __future__ import annotations

import os

import numpy as np

from unreid.data.samples import Sample

SAMPLE_ORDERS = ("name", "camera_frame", "random")


def sample_order(samples: list[Sample], mode: str, seed: int = 0) -> np.ndarray:
    """Permutation (int64) of ``range(len(samples))`` listing the samples in ``mode`` order."""
    if mode not in SAMPLE_ORDERS:
        raise ValueError(f"order must be one of {SAMPLE_ORDERS}, found {mode!r}")
    n = len(samples)
    rng = np.random.default_rng(seed)
    if mode == "random":
        return rng.permutation(n).astype(np.int64)
    if mode == "name":
        names = [os.path.basename(s.path) for s in samples]
        return np.array(sorted(range(n), key=lambda i: (names[i], i)), dtype=np.int64)
    missing = [s.path for s in samples if s.frame is None]
    if missing:
        raise ValueError(
            f"order 'camera_frame' needs a frame number on every image; {len(missing)} of {n} "
            f"have none (e.g. {missing[0]}); use order 'random' or 'name' for this dataset"
        )
    tiebreak = rng.permutation(n)
    cams = np.array([s.camera for s in samples], dtype=np.int64)
    frames = np.array([s.frame for s in samples], dtype=np.int64)
    return np.lexsort((tiebreak, frames, cams)).astype(np.int64)
