"""InfoMap clustering of a thresholded kNN graph: an alternative to Jaccard + DBSCAN.

DBSCAN needs a dense (N, N) Jaccard matrix and one global radius; InfoMap works
on a sparse kNN graph and finds communities as regions where a random walker
stays trapped, so it adapts to clusters of different densities and scales as
O(N * k) after the neighbour search.

Recipe, as read from alibaba/cluster-contrast-reid
(``examples/cluster_contrast_train_usl_infomap.py`` and
``clustercontrast/utils/infomap_cluster.py``; the README runs it with
``--eps 0.5 --k1 15 --k2 4``):

* ``--k1`` is the kNN size: ``faiss.IndexFlatIP`` (exact inner product on
  L2-normalised features, i.e. cosine similarity) searched with ``k=k1``, which
  returns the point itself among the ``k1`` columns. Here ``k`` means the same,
  so ``k=15`` reproduces ``--k1 15``: each point has at most ``k - 1`` edges.
* ``--eps`` is *not* a DBSCAN radius in that script (its help text is copied
  from the DBSCAN script): it is ``min_sim``, the similarity threshold. An edge
  i -> j is kept when ``1 - sim <= 1 - eps``, i.e. ``sim >= eps``.
* self-edges are dropped (the neighbour equal to i is skipped).
* edges are directed (i -> j for j in i's kNN list; a mutual pair gives two
  links) and weighted by the cosine similarity (the reference stores
  ``dist = 1 - sim`` and adds the link with weight ``1 - dist``). No Jaccard
  distance is computed on this path: k1/k2 only name the kNN and outlier sizes.
* InfoMap runs with ``--two-level --directed`` and the package's default seed
  and one trial (the reference uses the infomap 1.x camelCase API --
  ``addLink``, ``iterTree`` -- which 2.x removed; this module uses the 2.x API).
* ``--k2`` is the outlier size: modules with ``<= k2`` members become -1, so
  ``k2=4`` is ``min_cluster_size=5`` here.
* a point with no kept edge (no neighbour with ``sim >= eps``) is never given
  to InfoMap; the reference makes it a singleton, which the size rule turns
  into an outlier.

Differences from the reference, all deliberate: the seed is an argument; the
"no kept edge" rule is applied before the size rule (the reference counts such
a point in the module size too when it is also a link *target*, which can only
happen through float rounding, since i -> j kept means j's own best neighbour
is at least as similar); cluster ids are renumbered by each cluster's lowest
member index, so the output does not depend on InfoMap's module numbering.
"""

from __future__ import annotations

import numbers
from types import ModuleType

import faiss
import numpy as np
import torch

from unreid.neighbours import as_unit_features

__all__ = ["infomap_labels", "knn_edges"]

_MAX_SEED = 2**32 - 2  # InfoMap takes an unsigned 32-bit seed >= 1; we pass seed + 1


def _import_infomap() -> ModuleType:
    """Import ``infomap`` lazily so the rest of unreid works without it."""
    try:
        import infomap
    except ImportError as err:
        raise ImportError(
            "InfoMap clustering needs the optional `infomap` package: pip install infomap"
        ) from err
    return infomap


def _check_int(name: str, value: object, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, found {value!r}")
    val = int(value)
    if val < low or (high is not None and val > high):
        upper = f" and <= {high}" if high is not None else ""
        raise ValueError(f"{name} must be >= {low}{upper}, found {val}")
    return val


def knn_edges(x: np.ndarray, k: int, min_sim: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Directed kNN edges with cosine similarity >= ``min_sim``, self-edges removed.

    ``x`` must already be validated (N, D) unit-norm float32. The search is exact
    (``IndexFlatIP``) so the graph, and hence the clustering, is reproducible;
    the point itself is dropped wherever it appears in its own list (with exact
    duplicates it may not be first, or may be absent, in which case all ``k``
    columns are real neighbours -- as in the reference).

    Returns (sources, targets, similarities): int64, int64, float32 arrays,
    ordered by source, then by decreasing similarity.
    """
    n, d = x.shape
    index = faiss.IndexFlatIP(d)
    index.add(x)
    sims, nbrs = index.search(x, k)
    rows = np.repeat(np.arange(n, dtype=np.int64), k).reshape(n, k)
    keep = (nbrs >= 0) & (nbrs != rows) & (sims >= min_sim)
    return rows[keep], nbrs[keep].astype(np.int64), sims[keep].astype(np.float32)


def infomap_labels(
    features: np.ndarray | torch.Tensor,
    k: int = 15,
    min_sim: float = 0.5,
    min_cluster_size: int = 5,
    seed: int = 0,
) -> np.ndarray:
    """Cluster (N, D) L2-normalised features with InfoMap on a thresholded kNN graph.

    Args:
        features: (N, D) unit-norm rows (numpy or torch, any device). Not
            re-normalised: un-normalised input is an upstream bug, and inner
            products would no longer be cosine similarities.
        k: neighbours searched per point, the point itself included (the
            reference's ``--k1``); ``2 <= k < N``.
        min_sim: keep edge i -> j only if cos(i, j) >= min_sim (the reference's
            ``--eps``); in (0, 1], since similarities are the edge weights and
            InfoMap's flow needs positive weights.
        min_cluster_size: clusters with fewer members become outliers (the
            reference's ``--k2`` is ``min_cluster_size - 1``).
        seed: random seed in [0, 2**32 - 2]; InfoMap rejects 0, so it receives
            ``seed + 1``. Same input and seed give the same labels.

    Returns:
        (N,) int64 labels, clusters numbered 0..C-1 by their lowest member index,
        -1 for outliers (no edge at or above ``min_sim``, or a too-small cluster).
    """
    x = as_unit_features(features)
    n = x.shape[0]
    k = _check_int("k", k, 2)
    if k >= n:
        raise ValueError(f"k must be smaller than the number of samples N={n}, found k={k}")
    if isinstance(min_sim, bool) or not isinstance(min_sim, numbers.Real):
        raise ValueError(f"min_sim must be a real number, found {min_sim!r}")
    if not (0.0 < float(min_sim) <= 1.0):
        raise ValueError(f"min_sim must be in (0, 1] (edge weights must be > 0), found {min_sim}")
    min_cluster_size = _check_int("min_cluster_size", min_cluster_size, 1)
    seed = _check_int("seed", seed, 0, _MAX_SEED)
    infomap = _import_infomap()

    src, dst, w = knn_edges(x, k, float(min_sim))
    labels = np.full(n, -1, dtype=np.int64)
    if src.size == 0:
        return labels

    im = infomap.Infomap(f"--two-level --directed --silent --num-trials 1 --seed {seed + 1}")
    im.add_links(zip(src.tolist(), dst.tolist(), w.tolist(), strict=True))
    result = im.run()
    # infomap >= 2.16 returns a Result and deprecates Infomap.get_modules; older 2.x returns None
    modules = result.modules() if result is not None else im.get_modules(depth_level=1)
    nodes = np.fromiter(modules.keys(), dtype=np.int64, count=len(modules))
    mods = np.fromiter(modules.values(), dtype=np.int64, count=len(modules))
    labels[nodes] = mods
    labels[np.setdiff1d(np.arange(n), src)] = -1  # no outgoing edge: the reference's singles

    clustered = labels >= 0
    if not clustered.any():
        return labels
    uniq, first, inverse, counts = np.unique(
        labels[clustered], return_index=True, return_inverse=True, return_counts=True
    )
    big = counts >= min_cluster_size
    # renumber surviving modules by their lowest member (``first`` indexes the clustered subset,
    # whose order is the sample order), so ids do not depend on InfoMap's module numbering
    order = np.argsort(first[big], kind="stable")
    new_id = np.full(uniq.size, -1, dtype=np.int64)
    new_id[np.flatnonzero(big)[order]] = np.arange(order.size)
    labels[clustered] = new_id[inverse]
    return labels
