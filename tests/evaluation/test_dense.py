"""The dense evaluator's Market-1501 protocol mAP/CMC against a per-query brute-force reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from unreid.evaluation.dense import evaluate_ranking, pairwise_distance


def reference_metrics(dist, qp, gp, qc, gc, max_rank, distractor=0):
    """Per query: rank by (distance, gallery index), drop junk, then AP and first hit."""
    aps, cmcs, skipped = [], [], 0
    for i in range(dist.shape[0]):
        order = sorted(range(dist.shape[1]), key=lambda j: (dist[i, j], j))
        kept = [j for j in order if gp[j] >= 0 and not (gp[j] == qp[i] and gc[j] == qc[i])]
        match = [gp[j] == qp[i] and gp[j] != distractor for j in kept]
        if not any(match):
            skipped += 1
            continue
        hits, precisions = 0, []
        for pos, m in enumerate(match, start=1):
            if m:
                hits += 1
                precisions.append(hits / pos)
        aps.append(sum(precisions) / len(precisions))
        first = match.index(True) + 1
        cmcs.append([1.0 if first <= r else 0.0 for r in range(1, max_rank + 1)])
    return float(np.mean(aps)), np.mean(cmcs, axis=0), len(aps), skipped


def random_case(seed, nq=25, ng=60, ids=8, cams=3, ties=False):
    rng = np.random.default_rng(seed)
    dist = rng.integers(0, 4, size=(nq, ng)).astype(float) if ties else rng.random((nq, ng))
    return (
        dist,
        rng.integers(0, ids, nq),
        rng.integers(-1, ids, ng),  # includes distractors (0) and junk (-1)
        rng.integers(0, cams, nq),
        rng.integers(0, cams, ng),
    )


@pytest.mark.parametrize(
    ("seed", "ties", "max_rank"), [(0, False, 10), (1, True, 10), (2, True, 5), (3, False, 80)]
)
def test_matches_brute_force(seed, ties, max_rank):
    dist, qp, gp, qc, gc = random_case(seed, ties=ties)
    got = evaluate_ranking(dist, qp, gp, qc, gc, max_rank=max_rank, distractor_pid=0)
    mAP, cmc, valid, skipped = reference_metrics(dist, qp, gp, qc, gc, max_rank)
    assert got.mAP == pytest.approx(mAP, abs=1e-12)
    np.testing.assert_allclose(got.cmc, cmc, atol=1e-12)
    assert got.cmc.shape == (max_rank,)
    assert (got.num_valid_queries, got.num_skipped_queries) == (valid, skipped)
    assert skipped > 0  # these cases do exercise skipping


def test_no_distractor_pid_makes_identity_zero_a_person():
    dist, qp, gp, qc, gc = random_case(4, ids=3)
    got = evaluate_ranking(dist, qp, gp, qc, gc)  # the default: no identity is special
    mAP, cmc, valid, _ = reference_metrics(dist, qp, gp, qc, gc, 10, distractor=None)
    assert got.mAP == pytest.approx(mAP, abs=1e-12)
    np.testing.assert_allclose(got.cmc, cmc, atol=1e-12)
    assert got.num_valid_queries == valid


def test_agrees_with_sklearn_average_precision_on_continuous_distances():
    dist, qp, gp, qc, gc = random_case(5)
    aps = []
    for i in range(len(qp)):
        keep = (gp >= 0) & ~((gp == qp[i]) & (gc == qc[i]))
        y = (gp[keep] == qp[i]) & (gp[keep] != 0)
        if y.any():
            aps.append(average_precision_score(y, -dist[i, keep]))
    got = evaluate_ranking(dist, qp, gp, qc, gc, distractor_pid=0)
    assert got.mAP == pytest.approx(np.mean(aps), abs=1e-12)


def test_hand_made_ap_and_cmc():
    # matches at ranks 1 and 3 -> AP = (1/1 + 2/3) / 2
    dist = np.array([[0.1, 0.2, 0.3, 0.4]])
    g_pids, g_cams = [1, 2, 1, 3], [1, 1, 2, 0]
    m = evaluate_ranking(dist, [1], g_pids, [0], g_cams, max_rank=4)
    assert m.mAP == pytest.approx((1 + 2 / 3) / 2)
    assert m.cmc.tolist() == [1.0, 1.0, 1.0, 1.0]
    # first match at rank 2, only match -> AP 1/2
    m = evaluate_ranking(np.array([[0.5, 0.1, 0.9]]), [4], [4, 5, 6], [0], [1, 1, 1], max_rank=3)
    assert (m.mAP, m.cmc.tolist()) == (0.5, [0.0, 1.0, 1.0])


def test_same_identity_same_camera_is_removed_not_counted():
    base = evaluate_ranking(np.array([[0.2, 0.3]]), [1], [2, 1], [0], [1, 1], max_rank=2)
    # a same-id same-camera image in front changes nothing
    with_junk = evaluate_ranking(
        np.array([[0.0, 0.2, 0.3]]), [1], [1, 2, 1], [0], [0, 1, 1], max_rank=2
    )
    assert base.mAP == with_junk.mAP == 0.5
    np.testing.assert_array_equal(base.cmc, with_junk.cmc)
    # same camera but a different identity stays, as a false match
    other = evaluate_ranking(np.array([[0.0, 0.3]]), [1], [2, 1], [0], [0, 1], max_rank=2)
    assert other.mAP == 0.5
    # junk identity -1 is removed
    junk = evaluate_ranking(np.array([[0.0, 0.3]]), [1], [-1, 1], [0], [1, 1], max_rank=2)
    assert junk.mAP == 1.0


def test_distractors_never_match():
    dist = np.array([[0.05, 0.1], [0.05, 0.1]])
    m = evaluate_ranking(dist, [1, 0], [0, 1], [0, 0], [1, 1], max_rank=2, distractor_pid=0)
    # the pid-0 query has no match (distractors do not match it) and is skipped
    assert (m.num_valid_queries, m.num_skipped_queries) == (1, 1)
    assert m.mAP == 0.5 and m.cmc.tolist() == [0.0, 1.0]


def test_ties_are_broken_by_gallery_order():
    m = evaluate_ranking(np.array([[1.0, 1.0, 1.0]]), [1], [2, 1, 1], [0], [1, 1, 1], max_rank=3)
    assert m.mAP == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert m.cmc.tolist() == [0.0, 1.0, 1.0]


def test_pairwise_distance_against_loop():
    rng = np.random.default_rng(0)
    q, g = rng.normal(size=(5, 7)), rng.normal(size=(9, 7))
    want = np.array([[((a - b) ** 2).sum() for b in g] for a in q])
    got = pairwise_distance(q, torch.from_numpy(g))
    assert got.dtype == np.float32 and got.shape == (5, 9)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    qn, gn = (
        q / np.linalg.norm(q, axis=1, keepdims=True),
        g / np.linalg.norm(g, axis=1, keepdims=True),
    )
    np.testing.assert_allclose(pairwise_distance(qn, gn), 2 - 2 * qn @ gn.T, atol=1e-5)
    assert (pairwise_distance(qn, qn) >= 0).all()


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((np.zeros((2, 3)), [1], [1, 2, 3], [0, 0], [1, 1, 1]), {}, "q_pids must be 1-D with 2"),
        ((np.zeros((2, 3)), [1, 2], [1, 2], [0, 0], [1, 1, 1]), {}, "g_pids must be 1-D with 3"),
        ((np.zeros((2, 3)), [1, 2], [1, 2, 3], [0], [1, 1, 1]), {}, "q_cams"),
        ((np.zeros((2, 3)), [1, 2], [1, 2, 3], [0, 0], [1, 1]), {}, "g_cams"),
        ((np.zeros((0, 3)), [], [1, 2, 3], [], [1, 1, 1]), {}, "non-empty"),
        ((np.zeros(3), [1], [1, 2, 3], [0], [1, 1, 1]), {}, "2-D"),
        ((np.full((1, 1), np.nan), [1], [1], [0], [1]), {}, "NaN"),
        ((np.zeros((1, 1)), [1.5], [1], [0], [1]), {}, "integers"),
        ((np.zeros((1, 1)), [1], [1], [0], [1]), {"max_rank": 0}, "max_rank"),
        ((np.zeros((1, 2)), [1], [2, 1], [0], [1, 0]), {}, "no query has a valid"),
    ],
)
def test_bad_input(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        evaluate_ranking(*args, **kwargs)


def test_pairwise_distance_bad_input():
    with pytest.raises(ValueError, match="same feature dimension"):
        pairwise_distance(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="gf must be non-empty"):
        pairwise_distance(np.zeros((2, 3)), np.zeros((0, 3)))
    with pytest.raises(ValueError, match="qf must be 2-D"):
        pairwise_distance(np.zeros(3), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="NaN"):
        pairwise_distance(np.full((1, 3), np.inf), np.zeros((2, 3)))
