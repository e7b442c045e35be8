"""Device kNN (bf16 / TF32 / fp32 products, float64 re-ranking): exact lists from the definition.

The reference ranks every row of the float64 product x @ x.T by (similarity
descending, index ascending), the point itself first: the order
``device_knn`` promises whatever precision scored the candidates.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unreid.pseudo_labels import cluster_features, knn_search
from unreid.pseudo_labels.device_knn import PRECISIONS, ScoreBound, _cuda_matmul_tf32, device_knn
from unreid.settings import ClusterConfig


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def brute_force(x: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """Ranked (sims, idx) by the definition: float64 products, self first, ties by index."""
    s = x.astype(np.float64) @ x.astype(np.float64).T
    np.fill_diagonal(s, np.inf)
    cols = np.broadcast_to(np.arange(len(x)), s.shape)
    order = np.lexsort((cols, -s), axis=1)[:, :depth]
    return np.take_along_axis(s, order, axis=1), order


def identities(n_ids: int, per_id: int, dim: int, noise: float, seed: int) -> np.ndarray:
    """Clustered features: identity centres plus noise, rows shuffled."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_ids, dim))
    x = np.repeat(centres, per_id, axis=0) + noise * rng.normal(size=(n_ids * per_id, dim))
    return unit(x[rng.permutation(len(x))])


def run(x: np.ndarray, depth: int, **kw) -> tuple[np.ndarray, np.ndarray, int]:
    return device_knn(torch.from_numpy(x), np.arange(len(x)), depth, **kw)


@pytest.mark.parametrize("precision", sorted(PRECISIONS))
def test_random_features_equal_brute_force(precision: str) -> None:
    x = unit(np.random.default_rng(0).normal(size=(400, 32)))
    sims, idx, _ = run(x, 31, precision=precision)
    want_s, want_i = brute_force(x, 31)
    assert np.array_equal(idx, want_i)
    np.testing.assert_allclose(sims[:, 1:], want_s[:, 1:], atol=1e-6)
    assert sims.dtype == np.float32 and idx.dtype == np.int64


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_structured_features_with_duplicates_and_near_ties(precision: str) -> None:
    """Identities, exact duplicates (ties broken by index) and copies nudged by 1e-6."""
    x = identities(12, 20, 24, 0.3, 1)
    rng = np.random.default_rng(2)
    dup = x[rng.choice(len(x), 40, replace=False)]
    near = unit(x[rng.choice(len(x), 40, replace=False)] + 1e-6 * rng.normal(size=(40, 24)))
    x = np.concatenate([x, dup, near])
    # small chunks: many chunk boundaries, and a cut that runs through dense bands
    _, idx, _ = run(x, 31, precision=precision, extra=4, chunk_elems=7 * len(x))
    assert np.array_equal(idx, brute_force(x, 31)[1])


def test_bf16_alone_misorders_close_candidates_and_the_rerank_fixes_it() -> None:
    """Neighbours 1e-4 apart in similarity share one bf16 score; only the re-rank orders them."""
    dim, m = 16, 12
    x = np.zeros((m + 1, dim))
    x[0, 0] = 1.0  # the query
    # candidate i has cosine 0.9 + 1e-4 * i to the query: higher index, more similar
    cos = 0.9 + 1e-4 * np.arange(m)
    x[1:, 0] = cos
    x[1:, 1] = np.sqrt(1 - cos**2)
    x = x.astype(np.float32)
    xb = torch.from_numpy(x).bfloat16()
    low = (xb[:1] @ xb.T).float().numpy()[0]
    low[0] = np.inf
    bf16_order = np.lexsort((np.arange(m + 1), -low))[:6]
    want = brute_force(x, 6)[1][0]
    assert not np.array_equal(bf16_order, want)  # bf16 scores alone get it wrong
    _, idx, _ = device_knn(torch.from_numpy(x), np.array([0]), 6, precision="bf16", extra=2)
    assert np.array_equal(idx[0], want)


def test_a_cut_inside_a_band_is_certified_by_widening_the_rescore() -> None:
    """No extra candidates and a band of near-equal scores: the row is re-scored wider."""
    x = identities(1, 300, 64, 5.0, 3)  # one diffuse cloud: every score in one band
    sims, idx, refined = run(x, 11, precision="bf16", extra=0)
    assert refined > 0
    assert np.array_equal(idx, brute_force(x, 11)[1])


def test_rows_do_not_depend_on_chunks_or_which_queries_are_asked() -> None:
    x = identities(10, 15, 16, 0.5, 4)
    _, full, _ = run(x, 21, precision="bf16")
    rows = np.array([149, 3, 77, 0])
    _, part, _ = device_knn(torch.from_numpy(x), rows, 21, precision="bf16", chunk_elems=1)
    assert np.array_equal(part, full[rows])


def test_score_bound_holds_for_every_pair() -> None:
    x = identities(8, 25, 48, 0.4, 5)
    xt = torch.from_numpy(x)
    exact = torch.from_numpy(x.astype(np.float64) @ x.astype(np.float64).T)
    for name in ("bf16", "fp32"):
        p = PRECISIONS[name]
        xs = xt.to(p.dtype)
        low = (xs @ xs.T).to(torch.float64)
        b = ScoreBound.of(xt, xs, p)
        slack = b.row[:, None] + b.out * low.abs()
        assert ((low - exact).abs() <= slack).all()


def test_knn_search_and_clustering_take_the_device_names() -> None:
    x = identities(15, 12, 32, 0.6, 6)
    _, ref = knn_search(x, 31, method="torch")
    for method in ("torch_bf16", "torch_tf32", "torch_fp32"):
        sims, idx = knn_search(torch.from_numpy(x), 31, method=method)
        assert np.array_equal(idx, ref)
        np.testing.assert_allclose(sims[:, 0], 1.0, atol=1e-5)  # self similarity, not inf
    base = cluster_features(x, k1=10, k2=4, eps=0.5).labels
    assert np.array_equal(cluster_features(x, k1=10, k2=4, eps=0.5, knn="torch_bf16").labels, base)
    assert ClusterConfig(knn="torch_bf16").knn == "torch_bf16"


def test_bad_arguments() -> None:
    x = torch.from_numpy(unit(np.random.default_rng(7).normal(size=(20, 4))))
    with pytest.raises(ValueError, match="precision must be one of"):
        device_knn(x, np.arange(20), 5, precision="fp8")
    with pytest.raises(ValueError, match="depth must be in"):
        device_knn(x, np.arange(20), 21)
    with pytest.raises(ValueError, match="extra must be an integer"):
        device_knn(x, np.arange(20), 5, extra=-1)


def test_tf32_is_switched_for_cuda_products_only_and_restored() -> None:
    """The legacy allow_tf32 flag is never touched (torch >= 2.9 refuses a mix); bf16 sums in fp32."""
    cublas = torch.backends.cuda.matmul
    before = cublas.fp32_precision
    reduced = cublas.allow_bf16_reduced_precision_reduction
    with _cuda_matmul_tf32(True, torch.device("cuda")):
        assert cublas.fp32_precision == "tf32"
        assert not cublas.allow_bf16_reduced_precision_reduction  # the bound needs fp32 sums
    with _cuda_matmul_tf32(False, torch.device("cuda")):
        assert cublas.fp32_precision == "ieee"
    with _cuda_matmul_tf32(True, torch.device("cpu")):
        assert cublas.fp32_precision == before
    assert cublas.allow_bf16_reduced_precision_reduction == reduced
    assert cublas.fp32_precision == before
    assert cublas.allow_bf16_reduced_precision_reduction == reduced
