"""SpCL's unified loss against its definition: source classes, cluster means, lone images."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from unreid.losses.hybrid_nce import hybrid_nce
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
