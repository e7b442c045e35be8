"""BatchNorm groups: one forward of the batch equals forwarding each identity group alone.

The equivalences hold for a transformer too (its BN neck and the ICS stem's BNs; every
other layer works per image), checked on a 2-block ViT-S with the ICS stem.
"""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch
from torch import nn

from unreid.models import vit as vit_module
from unreid.models.bn_groups import bn_groups, check_group_size
from unreid.models.dsbn import source_rows
from unreid.models.reid_model import build_model
from unreid.settings import ModelConfig

K, G, B = 2, 4, 12  # 2 images per identity, 2 identities per group, 3 groups


def bn_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]


def randomise_bn(model: nn.Module) -> nn.Module:
    for m in bn_layers(model):  # non-trivial affine parameters and buffers
        m.weight.data.uniform_(0.5, 1.5)
        if m.bias.requires_grad:
            m.bias.data.uniform_(-0.2, 0.2)
        m.running_mean.uniform_(-0.1, 0.1)
        m.running_var.uniform_(0.8, 1.2)
    return model.train()


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    torch.manual_seed(0)
    return randomise_bn(build_model(ModelConfig(arch="resnet18", pretrained="none")).double())


@pytest.fixture(scope="module", params=["resnet18", "vit_small"])
def net(request, resnet) -> nn.Module:
    """The ResNet, or a 2-block ViT-S with the ICS stem (4 BNs: 3 in the stem, the neck)."""
    if request.param == "resnet18":
        return resnet
    with pytest.MonkeyPatch.context() as patch:
        spec = vit_module.VIT_SPECS["vit_small"]
        patch.setitem(vit_module.VIT_SPECS, "vit_small", replace(spec, depth=2))
        torch.manual_seed(0)
        cfg = ModelConfig(arch="vit_small", pretrained="none", stem="ics")
        model = build_model(cfg, (32, 16)).double()
    assert len(bn_layers(model)) == 4
    return randomise_bn(model)


def images(seed: int = 1, rows: int = B) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, 3, 32, 16, generator=g, dtype=torch.float64)
    return x + torch.arange(rows, dtype=torch.float64).view(-1, 1, 1, 1) / rows  # groups differ


def forward_backward(model: nn.Module, x: torch.Tensor, weights: torch.Tensor, per_group: bool):
    """Outputs, input gradient and parameter gradients of a fixed linear loss on the outputs."""
    x = x.clone().requires_grad_(True)
    model.zero_grad(set_to_none=True)
    out = torch.cat([model(chunk) for chunk in x.split(G)]) if per_group else model(x)
    (out * weights).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out.detach(), x.grad, grads


def test_one_grouped_forward_equals_each_group_forwarded_alone(net):
    x = images()
    weights = torch.randn(B, net.feature_dim, dtype=torch.float64)
    reference = copy.deepcopy(net)
    out_ref, gx_ref, grads_ref = forward_backward(reference, x, weights, per_group=True)
    model = copy.deepcopy(net)
    with bn_groups(model, G, num_instances=K) as count:
        out, gx, grads = forward_backward(model, x, weights, per_group=False)
    assert count == len(bn_layers(model))
    torch.testing.assert_close(out, out_ref)
    torch.testing.assert_close(gx, gx_ref)
    assert grads.keys() == grads_ref.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, grads_ref[name], msg=name)
    with torch.no_grad():  # whole-batch BN differs, so the comparison above can fail
        assert not torch.allclose(copy.deepcopy(net)(x), out_ref, atol=1e-4)


@pytest.mark.parametrize("running_stats", ["first", "mean"])
def test_running_statistics_follow_the_chosen_definition(net, running_stats):
    x = images(seed=2)
    model = copy.deepcopy(net)
    with torch.no_grad(), bn_groups(model, G, running_stats, num_instances=K):
        model(x)
    # One fresh copy per group, each forwarding its group alone.
    alone = [copy.deepcopy(net) for _ in range(B // G)]
    with torch.no_grad():
        for m, chunk in zip(alone, x.split(G), strict=True):
            m(chunk)
    per_group = [bn_layers(m) for m in alone]
    for i, bn in enumerate(bn_layers(model)):
        refs = [layers[i] for layers in per_group]
        if running_stats == "first":
            mean, var = refs[0].running_mean, refs[0].running_var
        else:
            mean = torch.stack([r.running_mean for r in refs]).mean(0)
            var = torch.stack([r.running_var for r in refs]).mean(0)
        torch.testing.assert_close(bn.running_mean, mean)
        torch.testing.assert_close(bn.running_var, var)
        assert bn.num_batches_tracked.item() == refs[0].num_batches_tracked.item() == 1


def test_cumulative_average_momentum_none_counts_one_forward_per_batch():
    torch.manual_seed(3)
    bn = nn.BatchNorm2d(4, momentum=None).double()
    ref = copy.deepcopy(bn)
    x = torch.randn(8, 4, 3, 3, dtype=torch.float64) * 2 + 1
    for _ in range(2):
        with bn_groups(bn, 4, "first"):
            bn(x)
        ref(x[:4])
    torch.testing.assert_close(bn.running_mean, ref.running_mean)
    torch.testing.assert_close(bn.running_var, ref.running_var)
    assert bn.num_batches_tracked.item() == 2


def test_channels_last_input_is_grouped_like_a_contiguous_one():
    torch.manual_seed(4)
    bn = nn.BatchNorm2d(5)
    x = torch.randn(6, 5, 4, 3)
    with bn_groups(bn, 3):
        a = bn(x)
        b = bn(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(a, b)
    assert a.is_contiguous() and b.is_contiguous(memory_format=torch.channels_last)
    ref = torch.cat([nn.functional.batch_norm(c, None, None, training=True) for c in x.split(3)])
    torch.testing.assert_close(a, ref * bn.weight.view(1, -1, 1, 1) + bn.bias.view(1, -1, 1, 1))


def test_eval_mode_is_untouched_and_the_model_is_restored_on_exit(resnet):
    x = images(seed=5, rows=G * 2)
    model = copy.deepcopy(resnet).eval()
    with torch.no_grad():
        before = model(x)
        with bn_groups(model, G, num_instances=K):
            inside = model(x)
    assert torch.equal(inside, before)
    assert all("forward" not in vars(m) for m in bn_layers(model))
    model.train()  # after the block, train mode normalises the whole batch again
    with torch.no_grad():
        whole = copy.deepcopy(model)(x)
        torch.testing.assert_close(model(x), whole)


def test_group_size_zero_or_the_whole_batch_is_plain_batch_norm(resnet):
    x = images(seed=6, rows=G)
    expected = copy.deepcopy(resnet)(x)
    for size in (0, G):
        model = copy.deepcopy(resnet)
        with bn_groups(model, size, num_instances=K):
            torch.testing.assert_close(model(x), expected)


def test_dsbn_groups_each_domain_half_like_the_reference_per_device_split():
    torch.manual_seed(7)
    base = build_model(ModelConfig(arch="resnet18", pretrained="none", dsbn=True)).double()
    base.train()
    src, tgt = images(seed=8, rows=2 * G), images(seed=9, rows=2 * G) * 0.5 - 1
    model = copy.deepcopy(base)
    with torch.no_grad(), bn_groups(model, G, num_instances=K), source_rows(model, 2 * G):
        out = model(torch.cat([src, tgt]))
    ref = copy.deepcopy(base)
    with torch.no_grad():
        expected = []
        for s_chunk, t_chunk in zip(src.split(G), tgt.split(G), strict=True):
            with source_rows(ref, len(s_chunk)):  # one device's source + target halves
                part = ref(torch.cat([s_chunk, t_chunk]))
            expected.append((part[:G], part[G:]))
    want = torch.cat([p[0] for p in expected] + [p[1] for p in expected])
    torch.testing.assert_close(out, want)


def test_bad_group_sizes_name_both_numbers():
    with pytest.raises(ValueError, match=r"bn_group_size=24.*num_instances=16"):
        check_group_size(24, 96, 16)
    with pytest.raises(ValueError, match=r"bn_group_size=64.*batch of 96"):
        check_group_size(64, 96, 16)
    with pytest.raises(ValueError, match=r"bn_group_size=-1"):
        check_group_size(-1, 96, 16)
    with (
        pytest.raises(ValueError, match=r"bn_group_size=6.*num_instances=4"),
        bn_groups(nn.BatchNorm1d(3), 6, num_instances=4),
    ):
        pass
    with (
        pytest.raises(ValueError, match="bn_running_stats='last'"),
        bn_groups(nn.BatchNorm1d(3), 4, "last"),
    ):
        pass
    bn = nn.BatchNorm1d(3)
    with bn_groups(bn, 4), pytest.raises(ValueError, match=r"bn_group_size=4.*batch of 6 rows"):
        bn(torch.randn(6, 3))
    with bn_groups(bn, 1), pytest.raises(ValueError, match="more than 1 value per channel"):
        bn(torch.randn(2, 3))
    with bn_groups(bn, 2), pytest.raises(RuntimeError, match="already grouped"), bn_groups(bn, 2):
        pass
