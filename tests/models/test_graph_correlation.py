"""GCL module: shapes, attention rows, a hand computation, and graph refinement."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from unreid.models.graph_correlation import GraphCorrelation


def identity_gcl(dim: int, temperature: float = 5.0, concat_norm: str = "joint"):
    """FC = identity, BN = identity up to a constant: relation = cosine of the raw nodes."""
    gcl = GraphCorrelation(dim, temperature, concat_norm)
    with torch.no_grad():
        for emb in (gcl.theta, gcl.phi):
            emb[0].weight.copy_(torch.eye(dim))
    return gcl.eval()


def test_shapes_unit_norm_and_stochastic_rows():
    gcl = GraphCorrelation(12)
    v = F.normalize(torch.randn(10, 12, generator=torch.Generator().manual_seed(0)), dim=1)
    m = gcl.attention(v)
    assert m.shape == (10, 10) and (m >= 0).all()
    torch.testing.assert_close(m.sum(dim=1), torch.ones(10))
    out = gcl(v)
    assert out.shape == (10, 24) and gcl.out_dim == 24
    torch.testing.assert_close(out.norm(dim=1), torch.ones(10))
    torch.testing.assert_close(F.normalize(out[:, :12], dim=1), v)  # first half is v itself


def test_refinement_equals_a_hand_computation():
    # three 2-d nodes at 0, 90 and 45 degrees
    r = 1 / math.sqrt(2)
    v = torch.tensor([[1.0, 0.0], [0.0, 1.0], [r, r]])
    gcl = identity_gcl(2, temperature=5.0)
    cos = [[1, 0, r], [0, 1, r], [r, r, 1]]
    want_m = []
    for i in range(3):
        e = [math.exp(5.0 * cos[i][j]) for j in range(3)]
        want_m.append([x / sum(e) for x in e])
    got_m = gcl.attention(v)
    torch.testing.assert_close(got_m, torch.tensor(want_m), atol=1e-5, rtol=1e-5)
    refined = [
        [sum(want_m[i][j] * v[j, c].item() for j in range(3)) for c in range(2)] for i in range(3)
    ]
    want = []
    for i in range(3):
        row = v[i].tolist() + refined[i]
        norm = math.sqrt(sum(x * x for x in row))
        want.append([x / norm for x in row])
    torch.testing.assert_close(gcl(v), torch.tensor(want), atol=1e-5, rtol=1e-5)
    # "halves": <v^_i, v^_j> is the mean of the raw and the refined cosine
    halves = identity_gcl(2, concat_norm="halves")(v)
    ref = F.normalize(torch.tensor(refined), dim=1)
    torch.testing.assert_close(halves @ halves.T, (v @ v.T + ref @ ref.T) / 2, atol=1e-5, rtol=0)


@pytest.mark.parametrize(("n", "b"), [(37, 16), (32, 16), (5, 16), (9, 1)])
def test_refine_cuts_the_order_into_graphs(n, b):
    g = torch.Generator().manual_seed(n)
    gcl = GraphCorrelation(6)
    gcl.train()
    gcl(F.normalize(torch.randn(20, 6, generator=g), dim=1))  # move BN running stats off init
    v = F.normalize(torch.randn(n, 6, generator=g), dim=1)
    order = torch.randperm(n, generator=g)
    got = gcl.refine(v, order, graph_size=b)
    assert gcl.training  # mode restored
    gcl.eval()
    want = torch.empty(n, 12)
    for s in range(0, n, b):
        rows = order[s : s + b]
        want[rows] = gcl(v[rows])  # each graph on its own, eval mode
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
    if b == 1:  # a graph of one node refines to itself
        torch.testing.assert_close(got, torch.cat([v, v], dim=1) / math.sqrt(2))


def test_bad_input_is_refused():
    gcl = GraphCorrelation(4)
    with pytest.raises(ValueError, match=r"\(B, 4\)"):
        gcl(torch.zeros(3, 5))
    with pytest.raises(ValueError, match="permutation"):
        gcl.refine(torch.zeros(3, 4), torch.tensor([0, 0, 1]))
    with pytest.raises(ValueError, match="concat_norm"):
        GraphCorrelation(4, concat_norm="sum")
    with pytest.raises(ValueError, match="temperature"):
        GraphCorrelation(4, temperature=0.0)


def trained_gcl(dim: int, seed: int) -> GraphCorrelation:
    """A module whose BatchNorm running statistics are off their initial values."""
    gcl = GraphCorrelation(dim)
    gcl.train()
    gcl(F.normalize(torch.randn(20, dim, generator=torch.Generator().manual_seed(seed)), dim=1))
    return gcl


def brute_force_stats(gcl: GraphCorrelation, v, graph, me: int):
    """Entropy of node ``me``'s attention row in ``graph`` and the node it attends most."""
    m = gcl.attention(v[graph])[me].detach()
    entropy = -sum(float(p) * math.log(float(p)) for p in m if p > 0)
    if len(graph) == 1:
        return entropy, -1
    others = [(float(m[j]), int(graph[j])) for j in range(len(graph)) if j != me]
    return entropy, max(others, key=lambda t: t[0])[1]


@pytest.mark.parametrize(("n", "b"), [(23, 5), (7, 7), (6, 1)])
def test_refine_neighbours_is_each_images_own_graph(n, b):
    g = torch.Generator().manual_seed(100 + n)
    gcl = trained_gcl(6, n)
    v = F.normalize(torch.randn(n, 6, generator=g), dim=1)
    # self first, then any b - 1 other rows (the method passes the kNN ranking)
    others = [torch.randperm(n - 1, generator=g)[: b - 1] for _ in range(n)]
    nbrs = torch.stack(
        [torch.cat([torch.tensor([i]), o + (o >= i).long()]) for i, o in enumerate(others)]
    )
    got = gcl.refine_neighbours(v, nbrs)
    assert gcl.training  # mode restored
    gcl.eval()
    for i in range(n):
        want = gcl(v[nbrs[i]])[0]  # node i is node 0 of its own graph
        torch.testing.assert_close(got.features[i], want, atol=1e-6, rtol=1e-5)
        entropy, top = brute_force_stats(gcl, v, nbrs[i], 0)
        assert got.entropy[i].item() == pytest.approx(entropy, abs=1e-5)
        assert got.top[i].item() == top


def test_refine_chunks_reports_each_nodes_attention():
    n, b = 13, 4
    g = torch.Generator().manual_seed(3)
    gcl = trained_gcl(5, 3)
    v = F.normalize(torch.randn(n, 5, generator=g), dim=1)
    order = torch.randperm(n, generator=g)
    got = gcl.refine_chunks(v, order, graph_size=b)
    torch.testing.assert_close(got.features, gcl.refine(v, order, graph_size=b))
    gcl.eval()
    for s in range(0, n, b):
        graph = order[s : s + b]
        for me, row in enumerate(graph.tolist()):
            entropy, top = brute_force_stats(gcl, v, graph, me)
            assert got.entropy[row].item() == pytest.approx(entropy, abs=1e-5)
            assert got.top[row].item() == top


def test_refine_neighbours_refuses_a_graph_without_its_centre():
    gcl = GraphCorrelation(4)
    v = F.normalize(torch.randn(3, 4), dim=1)
    with pytest.raises(ValueError, match="itself"):
        gcl.refine_neighbours(v, torch.tensor([[1, 0], [1, 0], [2, 1]]))
    with pytest.raises(ValueError, match=r"shape \(3, B\)"):
        gcl.refine_neighbours(v, torch.tensor([[0, 1], [1, 0]]))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        gcl.refine_neighbours(v, torch.tensor([[0, 1], [1, 5], [2, 1]]))
