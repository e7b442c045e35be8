"""Pseudo labels with the kNN search and the Jaccard rows split over torchrun ranks.

Under torchrun every rank already holds all N features (gathered after
extraction), yet one rank used to cluster while the others waited. The O(N^2 D)
kNN search and the Jaccard pair sums are independent row by row, so here:

1. each rank searches the neighbours of its shard (``DistContext.shard``) of
   the rows against all rows, on its device;
2. the (N, depth) lists are all-gathered (O(N k) memory per rank);
3. every rank builds the query-expanded encodings V from the whole lists (the
   O(N k^2) sparse part, deterministic, so identical on every rank) and sums
   the Jaccard pairs (p, g > p) of its own rows p;
4. rank 0 gathers the pairs, builds the sparse graph and runs DBSCAN; the
   caller broadcasts the labels, as for any clusterer.

One process is the special case of one shard, and with a kNN backend whose
rows do not depend on which other rows are searched with them (the device
backends ``torch_bf16`` / ``torch_tf32`` / ``torch_fp32``, see
``device_knn.py``) the lists, the graph and the labels are identical for any
number of ranks. ``"torch"`` and ``"exact"`` search in chunks whose fp32
rounding depends on the chunk, so neighbours closer than that rounding may
swap between world sizes.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from unreid.distributed import DistContext
from unreid.neighbours import as_unit_features
from unreid.pseudo_labels.clustering import dbscan_labels, sparse_radius
from unreid.pseudo_labels.jaccard import Variant, check_k
from unreid.pseudo_labels.jaccard_pairs import pair_distances
from unreid.pseudo_labels.knn import (
    DEVICE_KNN,
    KNN_METHODS,
    KnnMethod,
    knn_search,
    refine_rounds,
    resolve_knn,
)
from unreid.pseudo_labels.labels import PseudoLabels
from unreid.pseudo_labels.nn_refine import refine_rows
from unreid.pseudo_labels.sparse_jaccard import (
    check_max_distance,
    expanded_encodings,
    jaccard_depth,
    symmetric_csr,
)


def gathered_neighbours(
    features: np.ndarray | torch.Tensor,
    ctx: DistContext,
    depth: int,
    *,
    knn: KnnMethod = "torch_fp32",
    ivf_nlist: int | None = None,
    ivf_nprobe: int | None = None,
    knn_refine: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Ranked ``(sims, idx)`` of every row, each rank searching its shard; on every rank.

    The torch backends run on ``ctx.device`` (the features are moved there). The
    approximate backends' refinement rounds (``nn_refine.py``) need every row's
    list: each round, every rank refines its shard of the gathered lists and the
    shards are gathered again, which equals one process's rounds.
    """
    if knn not in KNN_METHODS:
        raise ValueError(f"knn must be one of {KNN_METHODS}, found {knn!r}")
    n = int(features.shape[0])
    knn = resolve_knn(knn, n, torch.device(ctx.device).type == "cuda")  # type: ignore[assignment]
    mine = ctx.shard(n)
    x = features
    if (knn == "torch" or knn in DEVICE_KNN) and isinstance(x, torch.Tensor):
        x = x.to(ctx.device)
    queries = np.arange(mine.start, mine.stop, dtype=np.int64)
    rounds = refine_rounds(knn_refine, knn)
    sims, idx = knn_search(
        x, depth, method=knn, queries=queries, ivf_nlist=ivf_nlist, ivf_nprobe=ivf_nprobe,
        refine=0,
    )  # fmt: skip
    counts = ctx.counts(n)

    def gather(sims: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        idx_all = ctx.all_gather_rows(torch.from_numpy(idx), counts)
        sims_all = ctx.all_gather_rows(torch.from_numpy(sims), counts)
        return sims_all.cpu().numpy(), idx_all.cpu().numpy()

    sims, idx = gather(sims, idx)
    unit = as_unit_features(features) if rounds else None
    for _ in range(rounds):
        sims, idx = gather(*refine_rows(unit, sims, idx, queries))
    return sims, idx


def sharded_jaccard(
    features: np.ndarray | torch.Tensor,
    ctx: DistContext,
    k1: int = 30,
    k2: int = 6,
    variant: Variant = "paper",
    *,
    knn: KnnMethod = "torch_fp32",
    max_distance: float | None = None,
    ivf_nlist: int | None = None,
    ivf_nprobe: int | None = None,
    knn_refine: int | None = None,
) -> sp.csr_matrix | None:
    """The sparse Jaccard distance (as ``sparse_jaccard_distance``) on rank 0, None elsewhere.

    Every rank must call it (it holds collectives).
    """
    n = int(features.shape[0])
    k1, k2 = check_k(k1, k2, n)
    limit = check_max_distance(max_distance)
    depth = jaccard_depth(k1, k2, variant)
    sims, idx = gathered_neighbours(
        features, ctx, depth, knn=knn, ivf_nlist=ivf_nlist, ivf_nprobe=ivf_nprobe,
        knn_refine=knn_refine,
    )  # fmt: skip
    vq = expanded_encodings(features, sims, idx, k1, k2, variant)
    part = pair_distances(vq, limit, rows=ctx.shard(n))
    del vq
    parts = ctx.gather_object(part)
    if parts is None:
        return None
    p, g, d = (np.concatenate(arrays) for arrays in zip(*parts, strict=True))
    return symmetric_csr(n, p, g, d)


def sharded_cluster_features_at(
    features: np.ndarray | torch.Tensor,
    radii: list[float],
    ctx: DistContext,
    *,
    k1: int = 30,
    k2: int = 6,
    min_samples: int = 4,
    jaccard_variant: Variant = "paper",
    knn: KnnMethod = "torch_fp32",
    ivf_nlist: int | None = None,
    ivf_nprobe: int | None = None,
    knn_refine: int | None = None,
) -> list[PseudoLabels] | None:
    """``cluster_features_at`` (sparse path) with the work split over ``ctx``'s ranks.

    Returns the labels at each radius on rank 0 and None on the others, which
    receive them by the caller's broadcast. Every rank must call it.
    """
    if not radii:
        raise ValueError("radii must hold at least one eps, found none")
    eps = sparse_radius(radii, min_samples)
    dist = sharded_jaccard(
        features, ctx, k1, k2, jaccard_variant, knn=knn, max_distance=eps,
        ivf_nlist=ivf_nlist, ivf_nprobe=ivf_nprobe, knn_refine=knn_refine,
    )  # fmt: skip
    if dist is None:
        return None
    return [PseudoLabels(dbscan_labels(dist, eps=r, min_samples=min_samples)) for r in radii]
