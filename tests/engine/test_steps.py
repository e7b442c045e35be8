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


class TwoRanks:
    """A DistContext stand-in whose other rank holds a copy of this rank's rows."""

    distributed = True

    def all_gather_batch(self, *tensors, source_count=0):
        return [torch.cat([t, t]).detach() for t in tensors], 2 * source_count


def test_under_ddp_the_update_sees_every_rank_rows_and_the_named_per_row_extras():
    from unreid.engine.steps import gathered

    method = Recording()
    method.row_extras = ("dispersion",)
    run = TrainingRun(nn.Linear(4, 3), method, None, None, ctx=TwoRanks())
    x = torch.randn(3, 3, requires_grad=True)
    batch = Batch(x, torch.tensor([0, 0, 1]), torch.tensor([0, 1, 0]), torch.arange(3))
    batch.extras = {"dispersion": torch.tensor([0.1, 0.2, 0.3]), "x_hat": torch.ones(3, 3)}
    got = gathered(run, batch)
    assert torch.equal(got.features, torch.cat([x, x]).detach())
    assert torch.equal(got.targets, torch.tensor([0, 0, 1, 0, 0, 1]))
    # per-row values the method names travel with the rows; per-rank ones are dropped
    assert set(got.extras) == {"dispersion"}
    assert torch.equal(got.extras["dispersion"], torch.tensor([0.1, 0.2, 0.3] * 2))


def test_hps_updates_with_the_instance_the_forward_found_most_dispersed():
    """The update reads the loss's dispersion (before the step), not a recomputation."""
    from unreid.methods.csa_hps import CSAHPS, CSAHPSConfig

    torch.manual_seed(0)
    method = CSAHPS(CSAHPSConfig(momentum=0.0), feature_dim=8)
    assert "dispersion" in method.row_extras  # what DDP gathers for it
    method.memory.reset(torch.nn.functional.normalize(torch.randn(2, 8), dim=1))
    x = torch.nn.functional.normalize(torch.randn(4, 8), dim=1)
    y = torch.tensor([0, 0, 1, 1])
    for chosen in ([0, 2], [1, 3]):
        dispersion = torch.zeros(4)
        dispersion[chosen] = 1.0  # the most dispersed instance of each cluster
        batch = Batch(x, y, torch.zeros(4, dtype=torch.long), torch.arange(4))
        batch.extras["dispersion"] = dispersion
        method.update_memories(batch)
        # momentum 0: each row becomes its chosen instance (renormalised)
        torch.testing.assert_close(method.memory.bank, x[chosen])
