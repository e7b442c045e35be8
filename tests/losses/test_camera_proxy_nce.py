"""CAP's intra- and inter-camera losses against loops written from their definitions."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from unreid.losses.camera_proxy_nce import inter_camera_nce, intra_camera_nce
from unreid.memory.camera_proxy_memory import CameraProxyMemory

D, TAU = 6, 0.07


def proxy_setup(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    n = 60
    labels = torch.randint(0, 8, (n,), generator=g)
    cameras = torch.randint(0, 3, (n,), generator=g)
    labels[:3] = torch.tensor([5, 5, 6])  # cluster 6 is seen by one camera only
    cameras[:3] = torch.tensor([0, 1, 2])
    labels[labels == 6] = 7
    labels[2] = 6
    mem = CameraProxyMemory(D)
    mem.reset(F.normalize(torch.randn(n, D, generator=g), dim=1), labels, cameras)
    batch_idx = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11])
    x = torch.randn(len(batch_idx), D, generator=g, dtype=torch.float64)
    return mem, x, labels[batch_idx], cameras[batch_idx]


def brute_intra(x, targets, cameras, mem, tau):
    xn = F.normalize(x, dim=1)
    total = 0.0
    for cam in sorted(set(cameras.tolist())):
        rows = [r for r in range(mem.num_proxies) if int(mem.proxy_camera[r]) == cam]
        losses = []
        for i in range(len(x)):
            if int(cameras[i]) != cam:
                continue
            own = int(mem.lookup[targets[i], cam])
            denom = sum(math.exp(float(xn[i] @ mem.bank[r].double()) / tau) for r in rows)
            losses.append(-(float(xn[i] @ mem.bank[own].double()) / tau - math.log(denom)))
        total += sum(losses) / len(losses)
    return total


def brute_inter(x, targets, cameras, mem, tau, k, positives):
    xn = F.normalize(x, dim=1)
    per_camera: dict[int, list[float]] = {}
    for i in range(len(x)):
        sims = [float(xn[i] @ mem.bank[r].double()) for r in range(mem.num_proxies)]
        same = [r for r in range(mem.num_proxies) if int(mem.proxy_cluster[r]) == int(targets[i])]
        pos = [r for r in same if positives == "all" or int(mem.proxy_camera[r]) != int(cameras[i])]
        if not pos:
            continue
        others = sorted(
            (r for r in range(mem.num_proxies) if r not in same), key=lambda r: -sims[r]
        )
        neg = others[:k]
        denom = sum(math.exp(sims[r] / tau) for r in pos + neg)
        loss = -sum(sims[p] / tau - math.log(denom) for p in pos) / len(pos)
        per_camera.setdefault(int(cameras[i]), []).append(loss)
    return sum(sum(v) / len(v) for v in per_camera.values())


def test_intra_camera_loss_matches_brute_force():
    mem, x, y, cams = proxy_setup()
    rows = mem.proxy_of(y, cams)
    got = intra_camera_nce(x, rows, cams, mem.bank.double(), mem.proxy_camera, TAU)
    assert got.item() == pytest.approx(brute_intra(x, y, cams, mem, TAU), rel=1e-9)


@pytest.mark.parametrize("positives", ["other_cameras", "all"])
@pytest.mark.parametrize("k", [1, 4, 50])
def test_inter_camera_loss_matches_brute_force(positives, k):
    mem, x, y, cams = proxy_setup(seed=k)
    got = inter_camera_nce(
        x, y, cams, mem.bank.double(), mem.proxy_cluster, mem.proxy_camera, TAU, k, positives
    )
    assert got.item() == pytest.approx(brute_inter(x, y, cams, mem, TAU, k, positives), rel=1e-9)


def test_single_camera_cluster_has_no_inter_term_but_a_finite_gradient():
    mem, x, y, cams = proxy_setup()
    alone = (y == 6).nonzero().flatten()
    assert len(alone) == 1
    x = x[alone].clone().requires_grad_(True)
    loss = inter_camera_nce(
        x, y[alone], cams[alone], mem.bank.double(), mem.proxy_cluster, mem.proxy_camera
    )
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(x.grad).all()


def detached_hard_negatives(x, targets, mem, k):
    """Per sample, the k most similar proxies of other clusters, chosen on plain numbers."""
    sims = (F.normalize(x.detach(), dim=1) @ mem.bank.double().T).tolist()
    out = []
    for i, row in enumerate(sims):
        others = [r for r in range(mem.num_proxies) if int(mem.proxy_cluster[r]) != int(targets[i])]
        out.append(sorted(others, key=lambda r: -row[r])[:k])
    return out


def loss_with_fixed_negatives(x, targets, cameras, mem, tau, negatives, positives):
    """The inter-camera loss from its definition, the negative sets given as constants."""
    sims = F.normalize(x, dim=1) @ mem.bank.double().T
    per_camera: dict[int, list[torch.Tensor]] = {}
    for i in range(len(x)):
        same = [r for r in range(mem.num_proxies) if int(mem.proxy_cluster[r]) == int(targets[i])]
        pos = [r for r in same if positives == "all" or int(mem.proxy_camera[r]) != int(cameras[i])]
        if not pos:
            continue
        lse = torch.logsumexp(sims[i, pos + negatives[i]] / tau, dim=0)
        per_camera.setdefault(int(cameras[i]), []).append(-(sims[i, pos] / tau - lse).mean())
    return sum(torch.stack(v).mean() for v in per_camera.values())


@pytest.mark.parametrize("positives", ["other_cameras", "all"])
@pytest.mark.parametrize("k", [1, 3, 50])
def test_hard_negatives_are_picked_without_gradient_through_the_choice(positives, k):
    mem, x, y, cams = proxy_setup(seed=10 + k)
    bank = mem.bank.double()
    x = x.clone().requires_grad_(True)
    loss = inter_camera_nce(
        x, y, cams, bank, mem.proxy_cluster, mem.proxy_camera, TAU, k, positives
    )
    (grad,) = torch.autograd.grad(loss, x, retain_graph=True)
    # the same loss with the negative sets frozen beforehand: equal value and gradient
    negatives = detached_hard_negatives(x, y, mem, k)
    others = [int((mem.proxy_cluster != t).sum()) for t in y]
    assert [len(n) for n in negatives] == [min(k, o) for o in others]
    x_ref = x.detach().clone().requires_grad_(True)
    ref = loss_with_fixed_negatives(x_ref, y, cams, mem, TAU, negatives, positives)
    (ref_grad,) = torch.autograd.grad(ref, x_ref)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-12)
    assert grad.abs().sum() > 0 and torch.allclose(grad, ref_grad, rtol=1e-10, atol=1e-12)
    # and the choice itself is no node of the autograd graph
    assert not {n for n in graph_nodes(loss) if "Topk" in n or "Sort" in n}


def graph_nodes(tensor: torch.Tensor) -> set[str]:
    seen, stack, names = set(), [tensor.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.add(type(node).__name__)
        stack.extend(child for child, _ in node.next_functions)
    return names


def test_graph_inspection_sees_a_selection_that_carries_gradient():
    # the check above would notice negatives whose logits come out of topk itself
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    values, _ = (x @ x.T).topk(2, dim=1)
    assert "TopkBackward0" in graph_nodes(values.sum())
    assert "TopkBackward0" not in graph_nodes((x @ x.T).sum())


def test_inter_camera_gradient_matches_finite_differences():
    mem, x, y, cams = proxy_setup(seed=5)
    bank = mem.bank.double()

    def loss(inp):
        return inter_camera_nce(inp, y, cams, bank, mem.proxy_cluster, mem.proxy_camera, TAU, 3)

    assert torch.autograd.gradcheck(loss, (x.clone().requires_grad_(True),), eps=1e-7)


def test_losses_reject_bad_input():
    mem, x, y, cams = proxy_setup()
    rows = mem.proxy_of(y, cams)
    bank = mem.bank.double()
    with pytest.raises(ValueError, match="another camera"):
        intra_camera_nce(x, rows, (cams + 1) % 3, bank, mem.proxy_camera)
    with pytest.raises(ValueError, match="positives must be"):
        inter_camera_nce(x, y, cams, bank, mem.proxy_cluster, mem.proxy_camera, positives="own")
    with pytest.raises(ValueError, match="hard_negatives"):
        inter_camera_nce(x, y, cams, bank, mem.proxy_cluster, mem.proxy_camera, hard_negatives=0)
    with pytest.raises(ValueError, match="cameras must have shape"):
        intra_camera_nce(x, rows, cams[:3], bank, mem.proxy_camera)
