"""SAA: permutation invariance, any cluster size, bounded-memory packing, dispersion."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from unreid.models import set_attention
from unreid.models.set_attention import SelfAttentionAggregation


def unit(n, d, seed):
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=1)


@pytest.mark.parametrize("n", [1, 2, 7, 300])
def test_prototype_is_permutation_invariant_dispersion_equivariant(n):
    saa = SelfAttentionAggregation(16, heads=4)
    with torch.no_grad():  # move off the identity init so heads differ
        saa.query.add_(
            0.3 * torch.randn(saa.query.shape, generator=torch.Generator().manual_seed(1))
        )
    x = unit(n, 16, n)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(2))
    p, d = saa.aggregate(x[None])
    pp, dp = saa.aggregate(x[perm][None])
    torch.testing.assert_close(p, pp, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(d[0, perm], dp[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(p.norm(dim=1), torch.ones(1))
    assert d.abs().sum() >= 0 and d.shape == (1, n)


def test_single_member_is_its_own_prototype():
    saa = SelfAttentionAggregation(8, heads=2)
    x = unit(1, 8, 0)
    p, d = saa.aggregate(x[None])
    torch.testing.assert_close(p[0], x[0])
    assert d.item() == pytest.approx(0.0, abs=1e-6)


def test_hand_computed_weights_with_one_head():
    """Identity maps, one head: w_j = mean_i softmax_{j != i}(cos(x_i, x_j) / t)."""
    saa = SelfAttentionAggregation(2, heads=1, temperature=0.5)
    r = 1 / math.sqrt(2)
    x = torch.tensor([[1.0, 0.0], [r, r], [0.0, 1.0]])
    cos = x @ x.T
    att = [[math.exp(cos[i, j].item() / 0.5) * (i != j) for j in range(3)] for i in range(3)]
    att = [[a / sum(row) for a in row] for row in att]
    w = [sum(att[i][j] for i in range(3)) / 3 for j in range(3)]
    got_w = saa.received_attention(x[None])[0, 0]
    torch.testing.assert_close(got_w, torch.tensor(w), atol=1e-6, rtol=1e-6)
    p, d = saa.aggregate(x[None])
    want_p = F.normalize(sum(w[j] * x[j] for j in range(3)), dim=0)
    torch.testing.assert_close(p[0], want_p, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(d[0], 1 - 3 * torch.tensor(w), atol=1e-6, rtol=1e-6)
    assert int(torch.argmin(d[0])) == 1  # the middle point is the most central


def test_outlier_is_the_most_dispersed():
    g = torch.Generator().manual_seed(4)
    centre = F.normalize(torch.randn(32, generator=g), dim=0)
    members = F.normalize(centre + 0.05 * torch.randn(9, 32, generator=g), dim=1)
    stray = F.normalize(torch.randn(1, 32, generator=g), dim=1)
    x = torch.cat([members[:4], stray, members[4:]])
    _, d = SelfAttentionAggregation(32, heads=4).aggregate(x[None])
    assert int(torch.argmax(d[0])) == 4


def test_padding_equals_separate_groups():
    saa = SelfAttentionAggregation(8, heads=2)
    a, b = unit(5, 8, 1), unit(2, 8, 2)
    x = torch.zeros(2, 5, 8)
    x[0], x[1, :2] = a, b
    mask = torch.tensor([[True] * 5, [True, True, False, False, False]])
    p, d = saa.aggregate(x, mask)
    pa, da = saa.aggregate(a[None])
    pb, db = saa.aggregate(b[None])
    torch.testing.assert_close(p, torch.cat([pa, pb]), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(d[1, :2], db[0], atol=1e-6, rtol=1e-6)
    assert (d[1, 2:] == 0).all()


def test_all_clusters_in_small_blocks_match_one_by_one(monkeypatch):
    monkeypatch.setattr(set_attention, "_PACK_ROWS", 16)
    monkeypatch.setattr(set_attention, "_BLOCK_ELEMS", 64)  # query rows blocked too
    saa = SelfAttentionAggregation(8, heads=2)
    sizes = [1, 3, 40, 2, 9, 5]
    labels = torch.cat(
        [torch.full((s,), c) for c, s in enumerate(sizes)] + [torch.tensor([-1, -1])]
    )
    labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))]
    x = unit(len(labels), 8, 5)
    protos, disp = saa.aggregate_clusters(x, labels, len(sizes))
    for c in range(len(sizes)):
        rows = (labels == c).nonzero().flatten()
        p, d = saa.aggregate(x[rows][None])
        torch.testing.assert_close(protos[c], p[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(disp[rows], d[0], atol=1e-5, rtol=1e-5)
    assert (disp[labels < 0] == 0).all()


def test_bad_arguments():
    with pytest.raises(ValueError, match="divisor"):
        SelfAttentionAggregation(10, heads=3)
    with pytest.raises(ValueError, match=r"\(G, n, 8\)"):
        SelfAttentionAggregation(8).aggregate(torch.zeros(3, 8))
