"""SpCL's unified loss against its definition (source classes, cluster means, lone images), and
the released code's form (`spcl.loss=official`) against its formula."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from unreid.losses.hybrid_nce import hybrid_nce, hybrid_nce_official
from unreid.memory.hybrid_memory import HybridMemory


def test_equals_the_written_out_softmax_over_the_three_kinds_of_rows():
    g = torch.Generator().manual_seed(0)
    d, tau = 5, 0.05
    w = F.normalize(torch.randn(2, d, generator=g), dim=1)  # source classes
    v = F.normalize(torch.randn(6, d, generator=g), dim=1)  # target images
    target_labels = [0, 0, 0, 1, 1, 2]  # clusters {0,1,2}, {3,4}; image 5 alone
    m = HybridMemory(d)
    m.reset(w, v)
    m.set_target_classes(torch.tensor(target_labels))
    x = torch.randn(3, d, generator=g)
    classes = torch.tensor([1, 2, 4])  # a source sample, a cluster member, the lone image
    got = hybrid_nce(x, classes, m.centroids(), tau)
    # the definition (SpCL Eq. 2): c_k = mean of the cluster's stored features
    c0, c1 = v[:3].mean(0), v[3:5].mean(0)
    rows = [w[0], w[1], c0, c1, v[5]]
    total = 0.0
    for b in range(3):
        f = F.normalize(x[b], dim=0)
        logits = [float(f @ r) / tau for r in rows]
        denom = sum(math.exp(z) for z in logits)
        total += -math.log(math.exp(logits[int(classes[b])]) / denom)
    assert got.item() == pytest.approx(total / 3, rel=1e-5)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="classes"):
        hybrid_nce(torch.randn(2, 3), torch.tensor([0, 5]), torch.randn(4, 3))
    with pytest.raises(ValueError, match="temperature"):
        hybrid_nce(torch.randn(2, 3), torch.tensor([0, 1]), torch.randn(4, 3), 0.0)


def official_by_hand(x, classes, rows, tau, present=None, eps=1e-6):
    """SpCL's HybridMemory.forward written out in float64: masked softmax with eps in its
    sum, then the mean of -log(p_y + eps)."""
    total = 0.0
    for b in range(x.shape[0]):
        f = F.normalize(x[b].double(), dim=0)
        exps = [
            math.exp(float(f @ r.double()) / tau) if present is None or present[j] else 0.0
            for j, r in enumerate(rows)
        ]
        p = exps[int(classes[b])] / (sum(exps) + eps)
        total += -math.log(p + eps)
    return total / x.shape[0]


def test_official_form_equals_its_formula_and_leaves_out_empty_classes():
    g = torch.Generator().manual_seed(1)
    x, rows = torch.randn(4, 6, generator=g), F.normalize(torch.randn(5, 6, generator=g), dim=1)
    classes = torch.tensor([0, 3, 3, 1])
    got = hybrid_nce_official(x, classes, rows, 0.05)
    assert got.item() == pytest.approx(official_by_hand(x, classes, rows, 0.05), rel=1e-5)
    present = torch.tensor([True, True, False, True, True])  # class 2 has no members
    got = hybrid_nce_official(x, classes, rows, 0.05, present=present)
    want = official_by_hand(x, classes, rows, 0.05, present=present.tolist())
    assert got.item() == pytest.approx(want, rel=1e-5)
    assert got.item() != pytest.approx(hybrid_nce_official(x, classes, rows, 0.05).item())
    with pytest.raises(ValueError, match="present"):
        hybrid_nce_official(x, classes, rows, 0.05, present=torch.ones(4, dtype=torch.bool))


def test_official_form_is_the_cross_entropy_until_the_own_class_falls_under_1e6():
    # a sample close to its class: the epsilons change nothing that matters
    rows = torch.eye(3)
    x = torch.tensor([[1.0, 0.1, 0.0]], requires_grad=True)
    y = torch.tensor([0])
    official, plain = hybrid_nce_official(x, y, rows, 0.05), hybrid_nce(x, y, rows, 0.05)
    assert official.item() == pytest.approx(plain.item(), abs=1e-5)
    # a sample pointing away from its class: s_y = -0.958 / 0.05 = -19.2 against 19.2 for
    # the class it faces, so p_y ~ e^-38 << 1e-6
    far = torch.tensor([[-1.0, 0.3, 0.0]], requires_grad=True)
    rows = torch.tensor([[1.0, 0, 0], [-1.0, 0, 0], [0, 1.0, 0]])
    official = hybrid_nce_official(far, y, rows, 0.05)
    assert official.item() == pytest.approx(-math.log(1e-6), rel=1e-6)  # capped at 13.8
    assert official.item() == pytest.approx(official_by_hand(far.detach(), y, rows, 0.05))
    (g_official,) = torch.autograd.grad(official, far)
    plain = hybrid_nce(far, y, rows, 0.05)
    assert plain.item() > 38  # uncapped: s_max - s_y
    (g_plain,) = torch.autograd.grad(plain, far)
    # the pull shrinks by p_y / (p_y + 1e-6) ~ 1e-11: this sample has stopped learning
    assert g_plain.norm() > 1.0 and g_official.norm() < 1e-8 * g_plain.norm()
