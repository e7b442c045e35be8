"""Sharded pseudo labels: two gloo ranks give the one-process lists, graph and labels.

One spawn (fork, two processes on loopback) computes everything each rank
sees; the tests compare it with the single-process functions and with brute
force. N is odd so the shards are uneven.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from unreid.distributed import DistContext
from unreid.pseudo_labels import knn_search, sparse_jaccard_distance
from unreid.pseudo_labels.clusterers import shards
from unreid.pseudo_labels.clustering import cluster_features_at
from unreid.pseudo_labels.jaccard_pairs import pair_distances
from unreid.pseudo_labels.sharded import (
    gathered_neighbours,
    sharded_cluster_features_at,
    sharded_jaccard,
)
from unreid.pseudo_labels.sparse_jaccard import expanded_encodings, jaccard_depth, symmetric_csr
from unreid.settings import ClusterConfig

WORLD = 2
N, DIM, K1, K2, RADII = 301, 16, 12, 4, [0.4, 0.55]
DEPTH = jaccard_depth(K1, K2, "paper")
IVF = {"ivf_nlist": 12, "ivf_nprobe": 2}  # cells too few to find every neighbour


def features() -> np.ndarray:
    """Identities of ~10 images with camera-like shifts, plus a few exact duplicates."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(30, DIM))
    ids = rng.integers(0, 30, N - 11)
    cams = rng.normal(size=(3, DIM)) * 0.3
    x = centres[ids] + cams[rng.integers(0, 3, ids.size)] + 0.5 * rng.normal(size=(ids.size, DIM))
    x = np.concatenate([x, x[:11]])
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(rank: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD),
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), GLOO_SOCKET_IFNAME="lo",
    )  # fmt: skip
    ctx = DistContext.from_env("cpu", timeout_s=60)
    x = torch.from_numpy(features())
    out = {
        "lists": gathered_neighbours(x, ctx, DEPTH, knn="torch_bf16"),
        "graph": sharded_jaccard(x, ctx, K1, K2, knn="torch_bf16", max_distance=max(RADII)),
        "labels": sharded_cluster_features_at(x, RADII, ctx, k1=K1, k2=K2, knn="torch_bf16"),
        "refined": gathered_neighbours(x, ctx, DEPTH, knn="ivf_whitened", knn_refine=2, **IVF),
    }
    torch.save(out, Path(out_dir) / f"rank{rank}.pt")
    ctx.close()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("sharded")
    mp.start_processes(
        worker, args=(free_port(), str(out)), nprocs=WORLD, join=True, start_method="fork"
    )
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def test_each_rank_holds_the_one_process_neighbour_lists(ranks) -> None:
    x = features()
    # float64 sums in one fixed order for every pair, so a duplicate's similarities tie
    # exactly (a BLAS product may sum edge columns in another order: 1e-16 apart)
    x64 = x.astype(np.float64)
    s = sum(np.outer(x64[:, d], x64[:, d]) for d in range(DIM))
    np.fill_diagonal(s, np.inf)
    brute = np.lexsort((np.broadcast_to(np.arange(N), s.shape), -s), axis=1)[:, :DEPTH]
    one_sims, one_idx = knn_search(x, DEPTH, method="torch_bf16")
    assert np.array_equal(one_idx, brute)
    for r in ranks:
        sims, idx = r["lists"]
        assert np.array_equal(idx, one_idx)
        assert np.array_equal(sims, one_sims)


def test_refinement_rounds_over_shards_equal_one_process_rounds(ranks) -> None:
    x = features()
    _, cells = knn_search(x, DEPTH, method="ivf_whitened", refine=0, **IVF)
    one_sims, one_idx = knn_search(x, DEPTH, method="ivf_whitened", refine=2, **IVF)
    assert (one_idx != cells).any()  # the rounds changed lists, so the comparison has teeth
    for r in ranks:
        sims, idx = r["refined"]
        assert np.array_equal(idx, one_idx)
        np.testing.assert_allclose(sims, one_sims, atol=1e-6)  # products of other shapes


def test_rank_zero_gathers_the_one_process_jaccard_graph(ranks) -> None:
    one = sparse_jaccard_distance(features(), K1, K2, knn="torch_bf16", max_distance=max(RADII))
    got = ranks[0]["graph"]
    assert got.nnz > 10 * N  # a graph with pairs beyond the diagonal
    for attr in ("indptr", "indices", "data"):
        assert np.array_equal(getattr(got, attr), getattr(one, attr)), attr
    assert ranks[1]["graph"] is None


def test_rank_zero_labels_equal_one_process_and_other_ranks_get_none(ranks) -> None:
    one = cluster_features_at(features(), RADII, k1=K1, k2=K2, knn="torch_bf16")
    got = ranks[0]["labels"]
    assert len(got) == len(RADII)
    for a, b in zip(got, one, strict=True):
        assert np.array_equal(a.labels, b.labels)
        assert a.num_clusters > 5
    assert ranks[1]["labels"] is None


def test_one_process_is_one_shard() -> None:
    x = features()
    ctx = DistContext()
    one = sparse_jaccard_distance(x, K1, K2, knn="torch_fp32", max_distance=0.5)
    got = sharded_jaccard(x, ctx, K1, K2, knn="torch_fp32", max_distance=0.5)
    assert (got != one).nnz == 0 and np.array_equal(got.indices, one.indices)


def test_shard_pair_sums_concatenate_to_the_whole() -> None:
    x = features()
    sims, idx = knn_search(x, DEPTH, method="torch_fp32")
    vq = expanded_encodings(x, sims, idx, K1, K2)
    whole = pair_distances(vq, 0.7)
    parts = [pair_distances(vq, 0.7, rows=range(a, b)) for a, b in ((0, 100), (100, 101), (101, N))]
    for w, p in zip(whole, zip(*parts, strict=True), strict=True):
        assert np.array_equal(w, np.concatenate(p))
    assert symmetric_csr(N, *whole).nnz > N
    with pytest.raises(ValueError, match="rows must be a range within"):
        pair_distances(vq, 0.7, rows=range(0, N + 1))


def test_the_engine_shards_only_sparse_dbscan_under_torchrun() -> None:
    two = DistContext(rank=0, world_size=2)
    assert shards("dbscan", ClusterConfig(), two)
    assert not shards("dbscan", ClusterConfig(), DistContext())
    assert not shards("dbscan", ClusterConfig(shard=False), two)
    assert not shards("dbscan", ClusterConfig(jaccard_impl="dense"), two)
    assert not shards("infomap", ClusterConfig(), two)
    assert ClusterConfig(jaccard_impl="dense").ignored()["shard"] == "cluster.jaccard_impl=dense"
