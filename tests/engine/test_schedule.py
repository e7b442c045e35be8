"""The learning-rate schedule: StepLR without a warm-up, CAP's linear warm-up × step with one;
and, end to end, CAP's recipe (warm-up, proxy-balanced batches, one pass per epoch)."""

from __future__ import annotations

import importlib
import io
import json
from bisect import bisect_right

import pytest
import torch

from tiny_runs import QUIET_RUN
from unreid.checkpoint import load_checkpoint
from unreid.config import load_config
from unreid.engine import train
from unreid.engine.schedule import build_scheduler
from unreid.settings import TrainConfig

BASE_LR = 3.5e-4


def optimizer(lr: float = BASE_LR) -> torch.optim.Optimizer:
    return torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))], lr=lr)


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


@pytest.mark.parametrize("warmup_epochs", [0, 10])
def test_a_restored_schedule_continues_as_the_uninterrupted_one(warmup_epochs):
    cfg = TrainConfig(warmup_epochs=warmup_epochs)
    straight = epoch_lrs(cfg, 45)
    opt = optimizer()
    scheduler = build_scheduler(opt, cfg)
    for _ in range(13):
        opt.step()
        scheduler.step()
    saved = io.BytesIO()
    torch.save({"optimizer": opt.state_dict(), "scheduler": scheduler.state_dict()}, saved)
    saved.seek(0)
    state = torch.load(saved, weights_only=True)  # checkpoints reload weights-only
    opt2 = optimizer()
    scheduler2 = build_scheduler(opt2, cfg)
    opt2.load_state_dict(state["optimizer"])
    scheduler2.load_state_dict(state["scheduler"])
    resumed = []
    for _ in range(13, 45):
        resumed.append(opt2.param_groups[0]["lr"])
        opt2.step()
        scheduler2.step()
    assert resumed == straight[13:]


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
    train(cfg, progress=False)
    assert len(epochs_seen) == 2
    for num_steps, drawn, clustered in epochs_seen:
        assert num_steps == drawn == max(1, clustered // 32)
    assert any(num_steps > 1 for num_steps, _, _ in epochs_seen)

    log = [json.loads(line) for line in (tmp_path / "straight" / "log.jsonl").open()]
    lrs = [record["lr"] for record in log]  # recorded after the step: the next epoch's
    assert lrs == pytest.approx([0.505 * cfg.train.lr, cfg.train.lr])

    first = load_config("cap/demo_cap_only", [*common, "name=split", "train.epochs=1"])
    train(first, progress=False)
    again = load_config("cap/demo_cap_only", [*common, "name=split", "train.epochs=2"])
    train(again, resume=tmp_path / "split", progress=False)
    a = load_checkpoint(tmp_path / "straight" / "last.pth")
    b = load_checkpoint(tmp_path / "split" / "last.pth")
    assert a["scheduler"] == b["scheduler"] and a["state"] == b["state"]
    for part in ("model", "method"):
        for key, value in a[part].items():
            assert torch.equal(value, b[part][key]), f"{part}.{key}"
