"""ClusterNCE against its definition: -log softmax(normalize(x) · M^T / tau)[y]."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from unreid.losses import cluster_nce


def _data(batch=7, dim=5, clusters=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, dim, generator=g, dtype=torch.float64)
    bank = F.normalize(torch.randn(clusters, dim, generator=g, dtype=torch.float64), dim=1)
    targets = torch.randint(clusters, (batch,), generator=g)
    return x, targets, bank


def _brute_force(x, targets, bank, temperature):
    total = 0.0
    for xi, y in zip(x.tolist(), targets.tolist(), strict=True):
        norm = math.sqrt(sum(v * v for v in xi))
        logits = [
            sum(a / norm * b for a, b in zip(xi, row, strict=True)) / temperature
            for row in bank.tolist()
        ]
        log_z = math.log(sum(math.exp(z) for z in logits))
        total += log_z - logits[y]
    return total / len(x)


@pytest.mark.parametrize("temperature", [0.05, 0.5, 2.0])
def test_matches_brute_force(temperature):
    x, targets, bank = _data()
    loss = cluster_nce(x, targets, bank, temperature=temperature)
    assert loss.shape == ()
    assert loss.item() == pytest.approx(_brute_force(x, targets, bank, temperature), rel=1e-10)


def test_hand_made_two_clusters():
    # x along cluster 0: logits (1/tau, 0); scale of x must not matter.
    x = torch.tensor([[3.0, 0.0]], dtype=torch.float64)
    bank = torch.eye(2, dtype=torch.float64)
    loss = cluster_nce(x, torch.tensor([0]), bank, temperature=0.5)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-2.0)))
    loss = cluster_nce(x, torch.tensor([1]), bank, temperature=0.5)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(2.0)))


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.7])
def test_label_smoothing_matches_torch(smoothing):
    x, targets, bank = _data(seed=1)
    expected = F.cross_entropy(
        F.normalize(x, dim=1) @ bank.T / 0.05, targets, label_smoothing=smoothing
    )
    torch.testing.assert_close(
        cluster_nce(x, targets, bank, temperature=0.05, label_smoothing=smoothing), expected
    )


def test_gradient_is_orthogonal_to_input_and_bank_gets_none():
    x, targets, bank = _data(seed=2)
    x.requires_grad_()
    cluster_nce(x, targets, bank).backward()
    # normalising inside projects the gradient off each embedding's own direction
    torch.testing.assert_close((x.grad * x.detach()).sum(1), torch.zeros(len(x), dtype=x.dtype))
    assert bank.grad is None


def test_accepts_int32_targets_and_float32_bank():
    x, targets, bank = _data(seed=3)
    expected = cluster_nce(x, targets, bank)
    got = cluster_nce(x, targets.int(), bank.float())
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"temperature": 0.0}, ValueError, "temperature must be a finite number > 0, found 0.0"),
        ({"temperature": -1.0}, ValueError, "temperature must be"),
        ({"temperature": float("inf")}, ValueError, "temperature must be"),
        ({"label_smoothing": 1.5}, ValueError, r"label_smoothing must be in \[0, 1\]"),
        (
            {"targets": torch.tensor([0, 1, 4, 0, 0, 0, 0])},
            ValueError,
            r"in \[0, 4\), found values in \[0, 4\]",
        ),
        (
            {"targets": torch.tensor([0, -1, 0, 0, 0, 0, 0])},
            ValueError,
            r"found values in \[-1, 0\]",
        ),
        (
            {"targets": torch.zeros(6, dtype=torch.long)},
            ValueError,
            r"targets must have shape \(7,\)",
        ),
        ({"targets": torch.zeros(7)}, TypeError, "integer tensor"),
        (
            {"bank": torch.ones(4, 3)},
            ValueError,
            r"bank must have shape \(C, 5\) to match x, found \(4, 3\)",
        ),
        ({"bank": torch.ones(0, 5)}, ValueError, "at least one row"),
        ({"x": torch.ones(7)}, ValueError, r"x must be a 2-D tensor \(B, D\), found \(7,\)"),
    ],
)
def test_errors(kwargs, error, match):
    x, targets, bank = _data()
    args = {"x": x, "targets": targets, "bank": bank} | kwargs
    with pytest.raises(error, match=match):
        cluster_nce(**args)


@pytest.mark.parametrize("eps", [0.1, 0.3])
def test_label_smoothing_from_its_definition(eps):
    """Target distribution (1 - eps) on the cluster + eps spread evenly over all C rows."""
    x, targets, bank = _data(seed=2)
    xn = F.normalize(x.double(), dim=1)
    total = 0.0
    for i in range(len(x)):
        logits = [float(xn[i] @ bank[c].double()) / 0.05 for c in range(len(bank))]
        lse = math.log(sum(math.exp(v) for v in logits))
        nll = [lse - v for v in logits]
        total += (1 - eps) * nll[int(targets[i])] + eps * sum(nll) / len(bank)
    got = cluster_nce(x.double(), targets, bank.double(), temperature=0.05, label_smoothing=eps)
    assert got.item() == pytest.approx(total / len(x), rel=1e-9)
