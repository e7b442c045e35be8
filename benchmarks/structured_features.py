"""Synthetic re-id features with camera structure, for choosing an approximate kNN search.

Isotropic noise around identity centres (`pseudo_labels.synthetic_features`) is a
worst case for approximate search in one way (no direction is special) and an easy
case in another: every image of an identity sits in one ball, so the identity falls
into one or two IVF cells. Real re-id features do not look like that. A camera adds
its own shift (viewpoint, light, background) that every identity seen there shares,
and an identity's images in one camera (one tracklet, one pose) stay closer to each
other than to its images elsewhere. An identity is then spread over a few
sub-clusters, one per camera, that lie in different directions; a k-means cell can
hold one sub-cluster and miss the others, which is where IVF with few probes loses
exactly the cross-camera neighbours the clustering needs to merge an identity.

Feature of image i (identity p, camera c), before L2 normalisation:

    centre[p] + shift[c] + offset[p, c] + noise[i]

with norms ~1 (centre), `camera_shift` (shared by all identities in camera c),
`tracklet` (one per identity and camera) and `noise` (per image); all Gaussian
directions, per-dimension std norm / sqrt(dim). Identities: N // 17 (Market-1501
has ~17 images per identity), each with >= 4 images, seen in `cams_per_id` of
`cameras` cameras (Market: 6 cameras, most identities in 2-4 of them).

The defaults (shift, tracklet and noise 0.7 each) were picked at 256-d, N = 20k,
so that the exact pipeline (k1 30, k2 6, eps 0.6) solves the task well but not
perfectly, as with trained features: ARI 0.92 against the true identities, 1,481
clusters for 1,176 identities (some split by camera), about half of each image's
30 exact neighbours of its own identity and 61% of those from another camera.
Smaller shifts (0.5 / 0.5 / 0.6) gave ARI 0.997, nothing for a search to get
wrong; a camera shift of 1.0 left almost no cross-camera neighbour (3%).
"""

from __future__ import annotations

import numpy as np

CAMERAS = 6
CAMS_PER_ID = (2, 4)  # inclusive range of cameras an identity is seen in
CAMERA_SHIFT = 0.7
TRACKLET = 0.7
NOISE = 0.7
_CHUNK_IDS = 4096  # identities generated at once (bounds the temporary arrays)


def _gauss(rng: np.random.Generator, shape: tuple[int, ...], norm: float) -> np.ndarray:
    dim = shape[-1]
    out = rng.standard_normal(shape, dtype=np.float32)
    out *= np.float32(norm / np.sqrt(dim))
    return out


def structured_features(
    n: int,
    dim: int,
    seed: int,
    *,
    cameras: int = CAMERAS,
    cams_per_id: tuple[int, int] = CAMS_PER_ID,
    camera_shift: float = CAMERA_SHIFT,
    tracklet: float = TRACKLET,
    noise: float = NOISE,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, dim) float32 unit features, identity ids and camera ids, in a shuffled order.

    Generated identity chunk by identity chunk and scattered into the output rows
    (a seeded permutation), so the memory above the (N, dim) output is a few
    chunks of rows, not N.
    """
    lo, hi = cams_per_id
    if not 1 <= lo <= hi <= cameras:
        raise ValueError(f"cams_per_id must satisfy 1 <= lo <= hi <= cameras, found {cams_per_id}")
    rng = np.random.default_rng(seed)
    ids = max(1, n // 17)
    if n < 4 * ids:
        raise ValueError(f"need at least 4 images per identity, N={n} is too small")
    sizes = 4 + np.bincount(rng.integers(0, ids, n - 4 * ids), minlength=ids)
    starts = np.concatenate([[0], np.cumsum(sizes)])
    rows = rng.permutation(n)  # image j (in identity order) goes to row rows[j]
    shifts = _gauss(rng, (cameras, dim), camera_shift)
    x = np.empty((n, dim), dtype=np.float32)
    pids = np.empty(n, dtype=np.int64)
    cams = np.empty(n, dtype=np.int64)
    for p0 in range(0, ids, _CHUNK_IDS):
        p1 = min(ids, p0 + _CHUNK_IDS)
        j0, j1 = starts[p0], starts[p1]
        pid = np.repeat(np.arange(p0, p1), sizes[p0:p1])
        # each identity's cameras: a random subset of `cameras`, of size in [lo, hi]
        ncam = rng.integers(lo, hi + 1, p1 - p0)
        order = np.argsort(rng.random((p1 - p0, cameras)), axis=1)
        slot = rng.integers(0, ncam[pid - p0])  # which of the identity's cameras
        cam = order[pid - p0, slot]
        centre = _gauss(rng, (p1 - p0, dim), 1.0)
        centre /= np.linalg.norm(centre, axis=1, keepdims=True)
        offset = _gauss(rng, (p1 - p0, cameras, dim), tracklet)
        chunk = centre[pid - p0]
        chunk += shifts[cam]
        chunk += offset[pid - p0, cam]
        chunk += _gauss(rng, chunk.shape, noise)
        chunk /= np.linalg.norm(chunk, axis=1, keepdims=True)
        dest = rows[j0:j1]
        x[dest] = chunk
        pids[dest] = pid
        cams[dest] = cam
    return x, pids, cams
