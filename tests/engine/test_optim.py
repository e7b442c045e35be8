"""The optimizer: Adam (one group, as always) or SGD, and the groups that skip weight decay."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from unreid.config import load_config
from unreid.distributed import DistContext
from unreid.engine.optim import build_optimizer, param_groups, skips_weight_decay
from unreid.engine.schedule import CosineLR
from unreid.engine.setup import build_run
from unreid.engine.training_data import load_training_data
from unreid.settings import TrainConfig


class TinyViT(nn.Module):
    """A LayerNorm, a Linear with bias, a bias-free Linear, tokens and a nested camera_embed."""

    def __init__(self) -> None:
        super().__init__()
        self.pos_embed = nn.Parameter(torch.zeros(1, 5, 4))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, 4))
        self.norm = nn.LayerNorm(4)
        self.head = nn.Linear(4, 3)
        self.proj = nn.Linear(4, 4, bias=False)
        self.side = nn.Module()
        self.side.camera_embed = nn.Parameter(torch.zeros(6, 1, 4))


NO_DECAY = {"pos_embed", "cls_token", "norm.weight", "norm.bias", "head.bias", "side.camera_embed"}
DECAY = {"head.weight", "proj.weight"}


def group_names(optimizer: torch.optim.Optimizer, module: nn.Module) -> list[set[str]]:
    name_of = {id(p): n for n, p in module.named_parameters()}
    return [{name_of[id(p)] for p in g["params"]} for g in optimizer.param_groups]


def test_default_is_the_one_group_adam_the_runs_always_had_in_the_fused_kernel():
    model = TinyViT()
    cfg = TrainConfig()
    built = build_optimizer(model.named_parameters(), cfg)
    before = torch.optim.Adam(
        list(model.parameters()), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True
    )
    assert type(built) is torch.optim.Adam and len(built.param_groups) == 1
    assert built.state_dict() == before.state_dict()  # same groups, same settings, same order
    assert [id(p) for p in built.param_groups[0]["params"]] == [id(p) for p in model.parameters()]
    loop = build_optimizer(model.named_parameters(), TrainConfig(fused_optimizer=False))
    plain = torch.optim.Adam(list(model.parameters()), lr=cfg.lr, weight_decay=cfg.weight_decay)
    assert loop.state_dict() == plain.state_dict()  # false: torch's default, as before


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_fused_steps_equal_the_loop_to_float_rounding_and_share_its_state(optimizer):
    torch.manual_seed(0)
    models = [TinyViT() for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    start = {k: v.clone() for k, v in models[0].state_dict().items()}
    opts = [
        build_optimizer(m.named_parameters(), TrainConfig(optimizer=optimizer, fused_optimizer=f))
        for m, f in zip(models, (False, True), strict=True)
    ]
    x = torch.randn(8, 5, 4)
    for step in range(20):
        for m, opt in zip(models, opts, strict=True):
            opt.zero_grad()
            loss = (m.head(m.norm(x + m.pos_embed)) ** 2).mean() + m.proj(x).abs().mean()
            (loss + (m.cls_token.sum() + m.side.camera_embed.sum()) ** 2).backward()
            opt.step()
        if step == 9:  # the loop's state continues in the fused kernel, and back
            a, b = (o.state_dict() for o in opts)
            opts[0].load_state_dict(b)
            opts[1].load_state_dict(a)
    moved = 0.0
    for (name, p), q in zip(models[0].named_parameters(), models[1].parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)
        moved = max(moved, (p - start[name]).abs().max().item())
    assert moved > 1e-3  # the parameters did move


def test_sgd_takes_momentum_lr_and_weight_decay_from_the_config():
    model = TinyViT()
    cfg = TrainConfig(optimizer="sgd", momentum=0.8, lr=0.008, weight_decay=1e-4)
    opt = build_optimizer(model.named_parameters(), cfg)
    assert type(opt) is torch.optim.SGD and len(opt.param_groups) == 1
    group = opt.param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"]) == (0.008, 0.8, 1e-4)
    assert (group["nesterov"], group["dampening"]) == (False, 0)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_norm_bias_tokens_puts_exactly_those_at_weight_decay_zero(optimizer):
    model = TinyViT()
    cfg = TrainConfig(optimizer=optimizer, weight_decay=0.05, no_weight_decay="norm_bias_tokens")
    opt = build_optimizer(model.named_parameters(), cfg)
    assert group_names(opt, model) == [DECAY, NO_DECAY]
    assert [g["weight_decay"] for g in opt.param_groups] == [0.05, 0.0]
    assert all(g["lr"] == cfg.lr for g in opt.param_groups)


def test_the_rule_reads_shape_and_the_last_name_component():
    matrix, vector = torch.zeros(2, 2), torch.zeros(2)
    assert skips_weight_decay("blocks.0.norm1.weight", vector)  # 1-D
    assert skips_weight_decay("gem.p", torch.zeros(()))  # a scalar
    assert skips_weight_decay("backbone.absolute_pos_embed", matrix)
    assert skips_weight_decay("method.camera_embed", matrix)
    assert not skips_weight_decay("blocks.0.attn.qkv.weight", matrix)
    assert not skips_weight_decay("pos_embed.proj.weight", matrix)  # only the last component
    assert not skips_weight_decay("cls_token_head.weight", matrix)


def test_an_empty_group_is_left_out():
    convs = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.Conv2d(4, 4, 1, bias=False))
    groups = param_groups(convs.named_parameters(), TrainConfig(no_weight_decay="norm_bias_tokens"))
    assert len(groups) == 1 and groups[0]["weight_decay"] == TrainConfig().weight_decay


def test_build_run_names_the_methods_parameters_and_builds_the_chosen_parts(tiny_synthetic):
    overrides = [
        f"data.root={tiny_synthetic}",
        "data.holdout_ids=0",
        "train.optimizer=sgd",
        "train.momentum=0.85",
        "train.scheduler=cosine",
        "train.no_weight_decay=norm_bias_tokens",
    ]
    cfg = load_config("gcl_scl/demo", overrides)
    run = build_run(cfg, load_training_data(cfg), DistContext())
    assert type(run.optimizer) is torch.optim.SGD and type(run.scheduler) is CosineLR
    assert run.optimizer.param_groups[0]["momentum"] == 0.85
    named = [*run.model.named_parameters()]
    named += [("method." + n, p) for n, p in run.method.named_parameters()]
    trainable = {n: p for n, p in named if p.requires_grad}
    assert any(n.startswith("method.") for n in trainable)  # GCL's graph module trains too
    by_id = {id(p): n for n, p in trainable.items()}
    decay, no_decay = ({by_id[id(p)] for p in g["params"]} for g in run.optimizer.param_groups)
    assert decay | no_decay == set(trainable) and not decay & no_decay
    assert no_decay == {n for n, p in trainable.items() if p.ndim <= 1}
