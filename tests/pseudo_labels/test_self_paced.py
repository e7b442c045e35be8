"""SpCL's reliability criterion against sets written out by hand and a brute-force definition."""

from __future__ import annotations

import numpy as np
import pytest

from unreid.pseudo_labels.self_paced import (
    independence_threshold,
    iou_with,
    reliable_clusters,
    singletons,
)


def brute_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|I(f) ∩ I'(f)| / |I(f) ∪ I'(f)| with I(f) the set of images sharing f's label."""
    out = []
    for i in range(len(a)):
        mine = {j for j in range(len(a)) if a[j] == a[i]}
        other = {j for j in range(len(b)) if b[j] == b[i]}
        out.append(len(mine & other) / len(mine | other))
    return np.array(out)


def test_singletons_give_each_outlier_its_own_label_after_the_clusters():
    assert singletons(np.array([-1, 5, 5, -1, 2])).tolist() == [2, 1, 1, 3, 0]
    assert singletons(np.array([-1, -1])).tolist() == [0, 1]


@pytest.mark.parametrize("seed", range(5))
def test_iou_equals_the_set_definition(seed):
    rng = np.random.default_rng(seed)
    a = singletons(rng.integers(-1, 4, size=30))
    b = singletons(rng.integers(-1, 6, size=30))
    np.testing.assert_allclose(iou_with(a, b), brute_iou(a, b))


def test_hand_made_clusterings():
    # images 0-3 one cluster; 4-7 another; 8, 9 outliers
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, -1, -1])
    # tighter: cluster 0 splits 3+1 (image 3 alone), cluster 1 holds
    tight = np.array([0, 0, 0, -1, 1, 1, 1, 1, -1, -1])
    # looser: cluster 1 absorbs outlier 8 (not independent), cluster 0 holds
    loose = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, -1])
    r = reliable_clusters(labels, tight, loose, alpha=0.9)
    # R_comp: images 0-2 share 3 of 4 -> 3/4; image 3 alone -> 1/4; cluster 1 -> 1
    np.testing.assert_allclose(r.comp[:8], [0.75, 0.75, 0.75, 0.25, 1, 1, 1, 1])
    # R_indep: cluster 0 unchanged -> 1; cluster 1 grew by one -> 4/5
    np.testing.assert_allclose(r.indep[:8], [1, 1, 1, 1, 0.8, 0.8, 0.8, 0.8])
    # kept: images 0-2 (independent, at their cluster's best compactness); image 3 and
    # the whole of cluster 1 (0.8 < alpha 0.9) become one-image classes, as do 8 and 9
    assert r.num_clusters == 1
    assert r.labels[:3].tolist() == [0, 0, 0]
    assert sorted(r.labels[3:].tolist()) == list(range(1, 8))
    assert r.num_unclustered == 7
    # with a lower alpha cluster 1 is kept too
    r2 = reliable_clusters(labels, tight, loose, alpha=0.8)
    assert r2.num_clusters == 2 and r2.num_unclustered == 3


def test_alpha_keeps_the_share_of_multi_image_clusters_by_spcls_index_rule():
    indep = np.array([1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05])
    sizes = np.array([3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 1])  # the last is one image: not ranked
    # 10 multi-image clusters: index round(0.9 * 10) = 9 of the descending order -> 0.1
    assert independence_threshold(indep, sizes, 0.9) == pytest.approx(0.1)
    # round(0.5 * 10) = 5 -> 0.5; numpy rounds half to even: round(0.25 * 10) = 2 -> 0.8
    assert independence_threshold(indep, sizes, 0.5) == pytest.approx(0.5)
    assert independence_threshold(indep, sizes, 0.25) == pytest.approx(0.8)
    assert np.isnan(independence_threshold(indep[-1:], sizes[-1:], 0.9))


def test_alpha_is_computed_when_not_given_and_reused_when_given():
    rng = np.random.default_rng(0)
    labels = rng.integers(-1, 8, size=60)
    tight = np.where(rng.random(60) < 0.2, -1, labels)
    loose = np.where(labels == 3, 4, labels)  # clusters 3 and 4 merge at the looser radius
    # 8 multi-image clusters, index round(0.5 * 8) = 4 of the descending R_indep: alpha = 1
    first = reliable_clusters(labels, tight, loose, keep_share=0.5)
    assert first.alpha == 1.0
    again = reliable_clusters(labels, tight, loose, alpha=first.alpha)
    assert np.array_equal(first.labels, again.labels)
    # merged clusters are not independent: none of their images stays in a cluster
    members = np.isin(labels, [3, 4])
    assert (np.bincount(first.labels)[first.labels[members]] == 1).all()


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="keep_share"):
        reliable_clusters(np.zeros(3), np.zeros(3), np.zeros(3), keep_share=0)
    with pytest.raises(ValueError, match="one label per image"):
        reliable_clusters(np.zeros(3), np.zeros(4), np.zeros(3))
