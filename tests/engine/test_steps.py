"""One epoch of steps: the loss sees the bank before the step's memory update."""

from __future__ import annotations

import torch
from torch import nn

from unreid.engine.setup import TrainingRun
from unreid.engine.steps import train_one_epoch
from unreid.methods import Batch, Method


class Recording(Method):
    """A method that logs the order of its calls and the bank each loss saw."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("bank", torch.zeros(2, 3))
        self.calls: list[str] = []

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        self.calls.append(f"loss bank={self.bank.sum().item():.0f}")
        return {"sq": batch.features.pow(2).mean(), "lin": 0.1 * batch.features.mean()}

    @torch.no_grad()
    def update_memories(self, batch: Batch) -> None:
        assert not batch.features.requires_grad
        self.calls.append("update")
        self.bank += 1


def test_order_of_loss_step_update_and_mean_losses():
    model = nn.Linear(4, 3)
    method = Recording()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    run = TrainingRun(model, method, opt, torch.optim.lr_scheduler.StepLR(opt, 1))
    steps = [(torch.randn(2, 4), torch.tensor([0, 1]), 0) for _ in range(3)]
    before = model.weight.detach().clone()
    labels, cameras = torch.tensor([5, 6]), torch.tensor([0, 1])
    out = train_one_epoch(run, steps, 3, labels, cameras, 0, False)
    assert method.calls == [
        "loss bank=0",
        "update",
        "loss bank=6",
        "update",
        "loss bank=12",
        "update",
    ]
    assert set(out) == {"sq", "lin"} and not torch.equal(before, model.weight)
    assert model.training and method.training
