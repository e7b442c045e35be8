"""The learning-rate schedule: StepLR without a warm-up, CAP's linear warm-up × step with one,
the cosine (with or without the warm-up); and, end to end, CAP's recipe (warm-up,
proxy-balanced batches, one pass per epoch)."""

from __future__ import annotations

import importlib
import io
import json
import math
from bisect import bisect_right

import pytest
import torch

from run_copies import copied_after
from tiny_runs import QUIET_RUN
from unreid.checkpoint import load_checkpoint
from unreid.config import load_config
from unreid.engine import train
from unreid.engine.schedule import CosineLR, build_scheduler
from unreid.errors import ConfigError
from unreid.settings import TrainConfig

BASE_LR = 3.5e-4


def optimizer(lr: float = BASE_LR) -> torch.optim.Optimizer:
    return torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))], lr=lr)


def two_groups(lr: float = BASE_LR) -> torch.optim.Optimizer:
    """Two parameter groups, as train.no_weight_decay=norm_bias_tokens gives."""
    decay = {"params": [torch.nn.Parameter(torch.zeros(2, 2))], "weight_decay": 5e-4}
    no_decay = {"params": [torch.nn.Parameter(torch.zeros(2))], "weight_decay": 0.0}
    return torch.optim.SGD([decay, no_decay], lr=lr, momentum=0.9)


def epoch_lrs(cfg: TrainConfig, epochs: int) -> list[float]:
    """The learning rate each epoch trains at, stepping once per epoch as the loop does."""
    opt = optimizer(cfg.lr)
    scheduler = build_scheduler(opt, cfg)
    lrs = []
    for _ in range(epochs):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    return lrs


def cap_lr(epoch: int) -> float:
    """CAP's WarmupMultiStepLR as train_cap.py builds it, written out independently:
    milestones [20, 40], gamma 0.1, warmup_factor 0.01, warmup_iters 10, linear."""
    warm = 1.0
    if epoch < 10:
        alpha = epoch / 10
        warm = 0.01 * (1 - alpha) + alpha
    return BASE_LR * warm * 0.1 ** bisect_right([20, 40], epoch)


def test_without_warm_up_the_schedule_is_torch_step_lr_itself():
    cfg = TrainConfig(step_size=7, gamma=0.3)
    assert type(build_scheduler(optimizer(), cfg)) is torch.optim.lr_scheduler.StepLR
    opt = optimizer()
    reference = torch.optim.lr_scheduler.StepLR(opt, 7, 0.3)
    expected = []
    for _ in range(30):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        reference.step()
    assert epoch_lrs(cfg, 30) == expected  # exactly, bit for bit


def test_warm_up_gives_caps_learning_rate_every_epoch():
    cfg = TrainConfig(lr=BASE_LR, warmup_epochs=10, warmup_factor=0.01)  # step 20, gamma 0.1
    lrs = epoch_lrs(cfg, 50)
    for epoch, lr in enumerate(lrs):
        assert lr == pytest.approx(cap_lr(epoch), rel=1e-12, abs=0), epoch
    assert lrs[0] == pytest.approx(0.01 * BASE_LR) and lrs[5] == pytest.approx(0.505 * BASE_LR)
    assert lrs[10] == pytest.approx(BASE_LR) and lrs[19] == pytest.approx(BASE_LR)
    assert lrs[20] == pytest.approx(0.1 * BASE_LR) and lrs[49] == pytest.approx(0.01 * BASE_LR)


def test_a_warm_up_longer_than_the_step_still_decays():
    cfg = TrainConfig(lr=1.0, warmup_epochs=4, warmup_factor=0.2, step_size=2, gamma=0.5)
    expected = [0.2, 0.4 * 1.0, 0.6 * 0.5, 0.8 * 0.5, 1.0 * 0.25, 1.0 * 0.25]
    assert epoch_lrs(cfg, 6) == pytest.approx(expected, rel=1e-12)


def cosine_lr(
    epoch: int, lr: float, epochs: int, floor: float, warm_w: int, warm_f: float
) -> float:
    """From the definition, written apart from the code: the warm-up ramps linearly from
    warm_f to 1 over warm_w epochs and multiplies a half cosine (1 + cos πt)/2 = cos²(πt/2)
    that falls from 1 to `floor` over `epochs` epochs and stays there."""
    ramp = warm_f + (1 - warm_f) * epoch / warm_w if epoch < warm_w else 1.0
    t = epoch / epochs if epoch < epochs else 1.0
    return lr * ramp * (floor + (1 - floor) * math.cos(math.pi * t / 2) ** 2)


@pytest.mark.parametrize(
    ("epochs", "floor", "warm_w", "warm_f"),
    [(50, 0.0, 0, 0.01), (120, 0.002, 20, 0.01), (7, 0.1, 3, 0.5)],
)
def test_cosine_gives_the_defined_learning_rate_every_epoch(epochs, floor, warm_w, warm_f):
    cfg = TrainConfig(
        lr=BASE_LR, epochs=epochs, scheduler="cosine", min_lr_factor=floor,
        warmup_epochs=warm_w, warmup_factor=warm_f,
    )  # fmt: skip
    lrs = epoch_lrs(cfg, epochs + 3)  # past the end, as the loop steps after the last epoch
    for epoch, lr in enumerate(lrs):
        expected = cosine_lr(epoch, BASE_LR, epochs, floor, warm_w, warm_f)
        assert lr == pytest.approx(expected, rel=1e-12, abs=1e-18), epoch
    assert lrs[0] == pytest.approx(BASE_LR * (warm_f if warm_w else 1.0))
    assert lrs[epochs:] == pytest.approx([BASE_LR * floor] * 3, abs=1e-18)
    assert all(b <= a for a, b in zip(lrs[warm_w:], lrs[warm_w + 1 :], strict=False))


def test_after_the_warm_up_the_cosine_is_transreids():
    """TransReID-SSL's timm CosineLRScheduler (lr_min 0.002 lr, 120 epochs, warmup_prefix
    off): lr_min + (lr - lr_min)(1 + cos(pi e / 120)) / 2 once the 20 warm-up epochs end."""
    cfg = TrainConfig(lr=4e-4, epochs=120, scheduler="cosine", min_lr_factor=0.002,
                      warmup_epochs=20, warmup_factor=0.01)  # fmt: skip
    lrs = epoch_lrs(cfg, 120)
    lr_min = 0.002 * 4e-4
    for epoch in range(20, 120):
        expected = lr_min + 0.5 * (4e-4 - lr_min) * (1 + math.cos(math.pi * epoch / 120))
        assert lrs[epoch] == pytest.approx(expected, rel=1e-12), epoch


def test_every_group_follows_the_schedule():
    cfg = TrainConfig(lr=0.01, epochs=10, scheduler="cosine", warmup_epochs=2)
    opt = two_groups(0.01)
    scheduler = build_scheduler(opt, cfg)
    for _ in range(6):
        assert opt.param_groups[0]["lr"] == opt.param_groups[1]["lr"]
        opt.step()
        scheduler.step()
    assert opt.param_groups[1]["lr"] == pytest.approx(cosine_lr(6, 0.01, 10, 0.0, 2, 0.01))


def save_and_reload(opt: torch.optim.Optimizer, scheduler) -> dict:
    saved = io.BytesIO()
    torch.save({"optimizer": opt.state_dict(), "scheduler": scheduler.state_dict()}, saved)
    saved.seek(0)
    return torch.load(saved, weights_only=True)  # checkpoints reload weights-only


@pytest.mark.parametrize(
    ("scheduler", "warmup_epochs"), [("step", 0), ("step", 10), ("cosine", 0), ("cosine", 10)]
)
def test_a_restored_schedule_continues_as_the_uninterrupted_one(scheduler, warmup_epochs):
    cfg = TrainConfig(scheduler=scheduler, warmup_epochs=warmup_epochs, epochs=45)
    straight, opt = [], two_groups()
    reference = build_scheduler(opt, cfg)
    for _ in range(45):
        straight.append([g["lr"] for g in opt.param_groups])
        opt.step()
        reference.step()
    opt = two_groups()
    first = build_scheduler(opt, cfg)
    for _ in range(13):
        opt.step()
        first.step()
    state = save_and_reload(opt, first)
    opt2 = two_groups()
    scheduler2 = build_scheduler(opt2, cfg)
    opt2.load_state_dict(state["optimizer"])
    scheduler2.load_state_dict(state["scheduler"])
    resumed = []
    for _ in range(13, 45):
        resumed.append([g["lr"] for g in opt2.param_groups])
        opt2.step()
        scheduler2.step()
    assert resumed == straight[13:]  # exactly, both groups
    assert scheduler2.state_dict() == reference.state_dict()


def test_a_cosine_run_is_not_continued_over_other_epochs():
    cfg = TrainConfig(scheduler="cosine", epochs=50)
    opt = optimizer()
    scheduler = build_scheduler(opt, cfg)
    assert type(scheduler) is CosineLR
    opt.step()
    scheduler.step()
    state = save_and_reload(opt, scheduler)
    longer = build_scheduler(optimizer(), TrainConfig(scheduler="cosine", epochs=60))
    with pytest.raises(ConfigError, match=r"train\.epochs=60: .*spans 50 epochs"):
        longer.load_state_dict(state["scheduler"])
    same = build_scheduler(optimizer(), cfg)
    same.load_state_dict(state["scheduler"])
    assert same.last_epoch == 1


# ------------------------------------------------------------------ end to end
RECIPE = [
    *QUIET_RUN,
    "train.threads=1",
    "train.epoch_length=one_pass",
    "cap.inter_start_epoch=1",
]


def test_caps_recipe_trains_one_pass_of_proxy_batches_and_resumes_exactly(
    tiny_synthetic, tmp_path, monkeypatch
):
    """cap/demo_cap_only with one pass per epoch: every epoch runs clustered // batch steps
    of 8 distinct proxies x 4, the log's learning rates follow the warm-up, and a run
    interrupted after epoch 1 and resumed ends where the uninterrupted one does."""
    loop = importlib.import_module("unreid.engine.loop")
    real = loop.train_one_epoch
    epochs_seen: list[tuple[int, int, int]] = []

    def spy(run, steps, num_steps, labels, cameras, *rest):
        drawn = 0

        def counted():
            nonlocal drawn
            for step in steps:
                indexes = step[1]
                groups = indexes.view(-1, 4)
                keys = {(int(labels[g[0]]), int(cameras[g[0]])) for g in groups}
                assert len(keys) == 8, "8 distinct proxies"
                for g in groups:
                    assert len(set(zip(labels[g].tolist(), cameras[g].tolist(), strict=True))) == 1
                drawn += 1
                yield step

        out = real(run, counted(), num_steps, labels, cameras, *rest)
        epochs_seen.append((num_steps, drawn, int((labels >= 0).sum())))
        return out

    monkeypatch.setattr(loop, "train_one_epoch", spy)
    common = [*RECIPE, f"data.root={tiny_synthetic}", f"out_dir={tmp_path}"]
    cfg = load_config("cap/demo_cap_only", [*common, "name=straight", "train.epochs=2"])
    assert (cfg.train.sampler, cfg.train.warmup_epochs, cfg.train.batch_size) == (
        "proxy_balanced",
        2,
        32,
    )
    with copied_after(1, tmp_path / "split"):  # as a kill after epoch 1 would leave it
        train(cfg, progress=False)
    assert len(epochs_seen) == 2
    for num_steps, drawn, clustered in epochs_seen:
        assert num_steps == drawn == max(1, clustered // 32)
    assert any(num_steps > 1 for num_steps, _, _ in epochs_seen)

    log = [json.loads(line) for line in (tmp_path / "straight" / "log.jsonl").open()]
    lrs = [record["lr"] for record in log]  # recorded after the step: the next epoch's
    assert lrs == pytest.approx([0.505 * cfg.train.lr, cfg.train.lr])

    again = load_config("cap/demo_cap_only", [*common, "name=split", "train.epochs=2"])
    train(again, resume=tmp_path / "split", progress=False)
    a = load_checkpoint(tmp_path / "straight" / "last.pth")
    b = load_checkpoint(tmp_path / "split" / "last.pth")
    assert a["scheduler"] == b["scheduler"] and a["state"] == b["state"]
    for part in ("model", "method"):
        for key, value in a[part].items():
            assert torch.equal(value, b[part][key]), f"{part}.{key}"
