"""Chunked query-gallery distances: the dense reference's numbers, a block at a time."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unreid.evaluation.dense import pairwise_distance
from unreid.evaluation.distances import (
    as_features,
    check_chunk,
    default_chunk_size,
    distance_chunks,
    squared_norms,
)


def test_default_chunk_size_bounds_a_block():
    assert default_chunk_size(82161) * 82161 <= 1 << 24
    assert default_chunk_size(10**9) == 1
    assert default_chunk_size(0) == 1 << 24


@pytest.mark.parametrize("chunk", [1, 5, 12, 100])
def test_chunks_equal_pairwise_distance(chunk):
    rng = np.random.default_rng(0)
    q = rng.normal(size=(12, 7)).astype(np.float32)
    g = rng.normal(size=(20, 7)).astype(np.float32)
    want = pairwise_distance(q, g)
    rows = dict(distance_chunks(torch.from_numpy(q), torch.from_numpy(g), chunk))
    assert sorted(rows) == list(range(0, 12, chunk))
    assert all(block.shape[0] <= chunk for block in rows.values())
    got = np.concatenate([rows[r0].numpy() for r0 in sorted(rows)])
    if chunk >= 12:  # the very same products: bit for bit
        np.testing.assert_array_equal(got, want)
    else:  # other block shapes may round the last bit differently (BLAS kernels)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_squared_norms_in_row_blocks():
    x = torch.randn(5000, 3)  # more rows than one block
    torch.testing.assert_close(squared_norms(x), (x * x).sum(1))


def test_as_features_converts_and_checks():
    t = as_features(np.arange(6, dtype=np.int64).reshape(2, 3), "qf", None)
    assert t.dtype == torch.float32 and t.is_contiguous() and t.device.type == "cpu"
    with pytest.raises(ValueError, match="qf must be real numeric"):
        as_features(torch.ones(2, 2, dtype=torch.bool), "qf", None)
    with pytest.raises(ValueError, match="gf must be non-empty"):
        as_features(np.zeros((0, 3)), "gf", None)
    with pytest.raises(ValueError, match="gf contains NaN"):
        as_features(np.array([[1.0, np.inf]]), "gf", None)


def test_check_chunk():
    assert check_chunk(None, 1000) == default_chunk_size(1000)
    assert check_chunk(np.int32(3), 1000) == 3
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        check_chunk(0, 10)
    with pytest.raises(ValueError, match="positive integer or None"):
        check_chunk(True, 10)
