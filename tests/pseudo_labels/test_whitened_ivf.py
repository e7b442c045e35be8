"""knn="auto" and the "ivf_whitened" backend: the size rule, exactness where it must be, recall.

The structured set mimics re-id features: identities seen in 3 of 6 cameras, each
camera shifting all its images alike. That is where plain IVF loses an identity's
other-camera images (cells split by camera) and the whitened cells find them, so
the recall and label assertions below fail for plain IVF on the same set.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

from unreid.errors import SettingError
from unreid.pseudo_labels import cell_kmeans, cluster_features, knn_recall, knn_search, whitened_ivf
from unreid.pseudo_labels import knn as knn_mod
from unreid.pseudo_labels.knn import AUTO_EXACT_BELOW, resolve_knn
from unreid.settings import ClusterConfig


def camera_features(n: int, dim: int, seed: int) -> np.ndarray:
    """Unit rows: identity centre + camera shift + (identity, camera) offset + noise."""
    rng = np.random.default_rng(seed)
    ids = n // 17
    pid = rng.integers(0, ids, n)
    cam = (pid * 7 + rng.integers(0, 3, n)) % 6  # 3 of the 6 cameras per identity
    s = 0.7 / np.sqrt(dim)
    centre = rng.normal(size=(ids, dim))
    centre /= np.linalg.norm(centre, axis=1, keepdims=True)
    x = centre[pid] + rng.normal(scale=s, size=(6, dim))[cam]
    x += rng.normal(scale=s, size=(ids, 6, dim))[pid, cam] + rng.normal(scale=s, size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def singletons(labels: np.ndarray) -> np.ndarray:
    out = labels.copy()
    out[out < 0] = out.max() + 1 + np.arange(int((out < 0).sum()))
    return out


def test_auto_is_exact_below_the_threshold_and_on_cuda_and_whitened_ivf_above() -> None:
    assert resolve_knn("auto", AUTO_EXACT_BELOW - 1, False) == "torch"
    assert resolve_knn("auto", AUTO_EXACT_BELOW, False) == "ivf_whitened"
    assert resolve_knn("auto", 10 * AUTO_EXACT_BELOW, True) == "torch"
    for method in ("ivf", "hnsw", "exact", "torch_bf16"):
        assert resolve_knn(method, 10 * AUTO_EXACT_BELOW, False) == method
    assert ClusterConfig().knn == "auto" and ClusterConfig().ivf_nprobe == 0


def test_auto_searches_exactly_on_a_small_set_and_switches_at_the_threshold(monkeypatch) -> None:
    x = camera_features(1200, 32, 0)
    auto = knn_search(x, 31, method="auto")
    exact = knn_search(x, 31, method="torch")
    assert all(np.array_equal(a, e, equal_nan=True) for a, e in zip(auto, exact, strict=True))
    labels = cluster_features(x)  # the default knn="auto"
    assert np.array_equal(labels.labels, cluster_features(x, knn="torch").labels)
    monkeypatch.setattr(knn_mod, "AUTO_EXACT_BELOW", 1000)
    monkeypatch.setattr(knn_mod, "NPROBE", 4)  # of 37 cells, so that it cannot be exact
    switched = knn_search(x, 31, method="auto")
    whitened = knn_search(x, 31, method="ivf_whitened")
    assert all(np.array_equal(a, w) for a, w in zip(switched, whitened, strict=True))
    assert not np.array_equal(switched[1], exact[1])  # it really is the approximate path


@pytest.mark.parametrize("cells", ["faiss", "coarse"])
def test_whitened_ivf_rows_are_ranked_exact_products_and_exhaustive_probing_is_exact(
    cells, monkeypatch
) -> None:
    if cells == "coarse":  # the cells of a million rows: k-means through coarse cells
        monkeypatch.setattr(whitened_ivf, "TWO_LEVEL_FROM", 1)
        monkeypatch.setattr(cell_kmeans, "DIRECT_BELOW", 8)
    x = camera_features(1500, 32, 1)
    kw = {"method": "ivf_whitened", "ivf_nlist": 24, "refine": 0}  # the cells' lists alone
    sims, idx = knn_search(x, 21, ivf_nprobe=4, **kw)
    assert np.array_equal(idx[:, 0], np.arange(1500))
    assert (np.diff(sims[:, 1:], axis=1) <= 0).all()
    assert all(len(set(row)) == 21 for row in idx)  # no row found twice
    np.testing.assert_allclose(sims, (x[:, None, :] * x[idx]).sum(axis=2), atol=1e-5)
    _, every = knn_search(x, 21, ivf_nprobe=24, **kw)
    _, exact = knn_search(x, 21, method="torch")
    assert np.array_equal(np.sort(every, axis=1), np.sort(exact, axis=1))
    queries = np.array([7, 3, 1499, 3])  # a shard of the rows, in any order, repeats allowed
    s_q, i_q = knn_search(x, 21, ivf_nprobe=4, queries=queries, **kw)
    assert np.array_equal(i_q, idx[queries])  # the same rows; sims up to the products' shapes
    np.testing.assert_allclose(s_q, sims[queries], atol=1e-6)


def test_whitened_ivf_keeps_the_cross_camera_neighbours_that_plain_ivf_loses() -> None:
    x = camera_features(3000, 64, 0)
    kw = {"ivf_nlist": 64, "ivf_nprobe": 8}
    _, plain = knn_search(x, 31, method="ivf", refine=0, **kw)
    _, whitened = knn_search(x, 31, method="ivf_whitened", refine=0, **kw)
    r_plain, r_white = (knn_recall(x, i, 6, sample=3000) for i in (plain, whitened))
    assert r_white > 0.97 and r_plain < 0.95
    exact = singletons(cluster_features(x, knn="torch").labels)
    ari = {
        m: adjusted_rand_score(
            exact, singletons(cluster_features(x, knn=m, knn_refine=0, **kw).labels)
        )
        for m in ("ivf", "ivf_whitened")
    }
    assert ari["ivf_whitened"] > 0.9 and ari["ivf_whitened"] > ari["ivf"] + 0.05, ari


def test_bad_whitened_settings_name_the_key() -> None:
    x = camera_features(600, 16, 2)
    with pytest.raises(ValueError, match="ivf_nprobe"):
        knn_search(x, 11, method="ivf_whitened", ivf_nprobe=0)
    with pytest.raises(ValueError, match="ivf_nlist"):
        knn_search(x, 11, method="ivf_whitened", ivf_nlist=601)
    with pytest.raises(ValueError, match="ivf_whiten"):
        knn_search(x, 11, method="ivf_whitened", ivf_whiten=0.5)
    with pytest.raises(RuntimeError, match="ivf_nprobe"):
        knn_search(x, 11, method="ivf_whitened", ivf_nlist=300, ivf_nprobe=1)
    for key, value in (("knn", "ivf_white"), ("ivf_nprobe", -1), ("ivf_nlist", -1)):
        with pytest.raises(SettingError) as err:
            ClusterConfig(**{key: value})
        assert err.value.key == key


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(("width", "k", "block"), [(4096, 70, 16), (640, 38, 8), (64, 10, 16)])
def test_block_topk_finds_the_same_top_k_as_a_full_sort(dtype, width, k, block) -> None:
    gen = torch.Generator().manual_seed(width + k)
    s = torch.randperm(7 * width, generator=gen)[: 5 * width].view(5, width).to(dtype)
    s[:, -3:] = float("-inf")  # padding columns, as the scan sets them
    vals, cols = whitened_ivf.block_topk(s, k, block)
    assert torch.equal(torch.gather(s, 1, cols), vals)
    assert torch.equal(vals.sort(dim=1).values, s.sort(dim=1).values[:, -k:])
    if dtype == torch.float32:  # distinct scores (bf16 rounds some together): same columns
        assert torch.equal(cols.sort(dim=1).values, s.argsort(dim=1)[:, -k:].sort(dim=1).values)


def test_block_topk_refuses_a_width_not_divisible_by_the_block() -> None:
    with pytest.raises(ValueError, match="divisible by 16, found 100"):
        whitened_ivf.block_topk(torch.zeros(2, 100), 5, 16)
