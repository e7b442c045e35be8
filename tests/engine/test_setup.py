"""Run setup: devices, seeds, the training data after the hold-out, model + method + optimizer."""

from __future__ import annotations

import pytest
import torch

from unreid.config import load_config
from unreid.distributed import DistContext
from unreid.engine.setup import RunState, build_run, resolve_device, seed_everything
from unreid.engine.training_data import load_training_data


def test_resolve_device():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="train.device='cuda'"):
            resolve_device("cuda")


def test_seed_everything_replays_draws():
    seed_everything(3)
    a = torch.rand(3)
    seed_everything(3)
    assert torch.equal(a, torch.rand(3))


def test_build_run_and_restore(tiny_synthetic, tmp_path):
    from unreid.checkpoint import save_checkpoint

    cfg = load_config(
        "gcl_scl/demo", [f"data.root={tiny_synthetic}", "data.holdout_ids=0", "train.lr=0.01"]
    )
    data = load_training_data(cfg)
    run = build_run(cfg, data, DistContext())
    names = {id(p) for g in run.optimizer.param_groups for p in g["params"]}
    assert all(id(p) in names for p in run.method.gcl.parameters())  # method modules train too
    assert run.optimizer.param_groups[0]["lr"] == 0.01
    save_checkpoint(tmp_path / "c.pth", **run.state_dicts(), state=vars(RunState(3, 0.5, 2)))
    again = build_run(cfg, data, DistContext())
    assert again.restore(str(tmp_path / "c.pth")) == RunState(3, 0.5, 2)
    for k, v in run.model.state_dict().items():
        assert torch.equal(v, again.model.state_dict()[k])
