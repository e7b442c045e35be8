"""RankingMetrics and the checks and summaries both evaluators share."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unreid.evaluation.metrics import (
    RankingMetrics,
    average_precisions,
    check_distmat,
    check_ids,
    check_max_rank,
    summarize,
)


def test_metrics_accessors():
    m = RankingMetrics(
        mAP=0.5, cmc=np.linspace(0.3, 1.0, 10), num_valid_queries=3, num_skipped_queries=1
    )
    assert (m.rank1, m.rank5, m.rank10) == (m.cmc[0], m.cmc[4], m.cmc[9])
    d = m.as_dict(percent=True)
    assert d["mAP"] == 50.0 and d["rank1"] == pytest.approx(30.0) and d["num_skipped_queries"] == 1
    assert m.as_dict()["rank10"] == 1.0
    short = RankingMetrics(mAP=1.0, cmc=np.ones(3), num_valid_queries=1, num_skipped_queries=0)
    assert set(short.as_dict()) == {"mAP", "rank1", "num_valid_queries", "num_skipped_queries"}
    with pytest.raises(ValueError, match="max_rank"):
        _ = short.rank5


def test_check_ids_accepts_lists_arrays_and_tensors():
    for ids in ([3, 1, 2], np.array([3, 1, 2], dtype=np.int32), torch.tensor([3, 1, 2])):
        got = check_ids(ids, "q_pids", 3, "one per row")
        assert got.dtype == np.int64 and got.tolist() == [3, 1, 2]
    assert check_ids([], "q_pids", 0, "one per row").shape == (0,)
    with pytest.raises(ValueError, match=r"q_pids must be 1-D with 2 entries \(one per row\)"):
        check_ids([1, 2, 3], "q_pids", 2, "one per row")
    with pytest.raises(ValueError, match="must hold integers"):
        check_ids([1.0, 2.0], "g_cams", 2, "one per column")


def test_check_max_rank():
    assert check_max_rank(np.int64(5)) == 5 and isinstance(check_max_rank(np.int64(5)), int)
    for bad in (0, -1, True, 2.0, "3"):
        with pytest.raises(ValueError, match="max_rank must be an integer >= 1"):
            check_max_rank(bad)


def test_check_distmat_leaves_nan_to_the_caller():
    d = np.array([[0.1, np.nan]])
    assert check_distmat(d) is d  # no copy, and NaN is not this check's business
    assert check_distmat(torch.zeros(2, 3)).shape == (2, 3)
    with pytest.raises(ValueError, match="non-empty 2-D"):
        check_distmat(np.zeros((2, 0)))
    with pytest.raises(ValueError, match="real numeric"):
        check_distmat(np.zeros((2, 2), dtype=complex))


def test_average_precisions_per_query_segments():
    # query 1: precisions 1, 2/3 ; query 2: precision 1/2
    ap = average_precisions(np.array([1.0, 2 / 3, 0.5]), np.array([2, 1]))
    np.testing.assert_allclose(ap, [(1 + 2 / 3) / 2, 0.5])


def test_summarize_counts_and_cmc():
    m = summarize(np.array([1.0, 0.5]), np.array([1, 3]), nq=5, max_rank=4)
    assert m.mAP == 0.75 and m.cmc.tolist() == [0.5, 0.5, 1.0, 1.0]
    assert (m.num_valid_queries, m.num_skipped_queries) == (2, 3)
    assert m.cmc.dtype == np.float64
    with pytest.raises(ValueError, match="all 4 queries skipped"):
        summarize(np.empty(0), np.empty(0, dtype=np.int64), nq=4, max_rank=3)
