"""torch.distributed helpers: two gloo processes on loopback against one process on everything.

One spawn runs every two-rank check (starting processes is the slow part) and
saves what each rank saw; the tests compare that with the single-process
answer computed here from the definition.
"""

from __future__ import annotations

import copy
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from unreid.distributed import DistContext, RankBatches
from unreid.models.bn_groups import bn_groups

WORLD = 2
STEPS = 2
ROWS = 8  # per step: 4 identities x K=2, each rank takes 2 identities


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_models() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    cnn = nn.Sequential(
        nn.Conv2d(3, 4, 3, bias=False),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
        nn.BatchNorm1d(3),
    )
    return {"mlp": mlp.double(), "bn": cnn.double()}  # float64: equal up to rounding


def batches() -> dict[str, list[torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return {
        "mlp": [torch.randn(ROWS, 6, generator=g, dtype=torch.float64) for _ in range(STEPS)],
        "bn": [
            torch.randn(ROWS, 3, 5, 5, generator=g, dtype=torch.float64) * 2 + 1
            for _ in range(STEPS)
        ],
    }


def loss_of(out: torch.Tensor) -> torch.Tensor:
    return (out - torch.arange(3.0, dtype=out.dtype)).pow(2).mean()  # a mean of per-sample terms


def train_steps(model: nn.Module, inputs: list[torch.Tensor], rows: slice) -> list[torch.Tensor]:
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    outs = []
    for x in inputs:
        out = model(x[rows])
        opt.zero_grad()
        loss_of(out).backward()
        opt.step()
        outs.append(out.detach())
    return outs


def worker(rank: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(WORLD),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        GLOO_SOCKET_IFNAME="lo",
    )
    ctx = DistContext.from_env("cpu", timeout_s=60)
    result: dict = {"ctx": (ctx.rank, ctx.world_size, ctx.local_rank, str(ctx.device))}
    n = 11
    mine = ctx.shard(n)
    rows = torch.arange(n, dtype=torch.float32).view(-1, 1).repeat(1, 3)[mine.start : mine.stop]
    result["gathered"] = ctx.all_gather_rows(rows, ctx.counts(n))
    uneven = [1, 4]
    result["uneven"] = ctx.all_gather_rows(torch.full((uneven[rank], 2), rank + 1.0), uneven)
    result["broadcast"] = ctx.broadcast_object({"labels": [3, -1, 3]} if rank == 0 else None)
    feats = torch.arange(6.0).view(3, 2) + 10 * rank  # rows 0-1 source, row 2 target
    (f, t), sources = ctx.all_gather_batch(
        feats, torch.tensor([0, 1, 2]) + 3 * rank, source_count=2
    )
    result["batch"] = (f, t, sources)
    result["rank_batches"] = list(RankBatches([list(range(8)), list(range(8, 16))], ctx, 2))
    share = slice(rank * ROWS // WORLD, (rank + 1) * ROWS // WORLD)
    for name, model in make_models().items():
        ddp = ctx.wrap(model)
        outs = train_steps(ddp, batches()[name], share)
        result[name] = {
            "params": [p.detach().clone() for p in model.parameters()],
            "buffers": {k: v.clone() for k, v in model.named_buffers()},
            "features": [ctx.all_gather_batch(o)[0][0] for o in outs],
        }
    ctx.barrier()
    torch.save(result, Path(out_dir) / f"rank{rank}.pt")
    ctx.close()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("ddp")
    # fork: the children inherit the imported torch instead of importing it again (seconds on
    # a busy machine); they set one thread first, as DataLoader workers do after a fork
    mp.start_processes(
        worker, args=(free_port(), str(out)), nprocs=WORLD, join=True, start_method="fork"
    )
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def test_each_rank_joins_over_gloo_with_its_rank(ranks):
    assert [r["ctx"] for r in ranks] == [(0, 2, 0, "cpu"), (1, 2, 1, "cpu")]


def test_all_gather_rows_is_the_concatenation_in_global_order(ranks):
    want = torch.arange(11, dtype=torch.float32).view(-1, 1).repeat(1, 3)
    uneven = torch.cat([torch.full((1, 2), 1.0), torch.full((4, 2), 2.0)])
    for r in ranks:
        assert torch.equal(r["gathered"], want)
        assert torch.equal(r["uneven"], uneven)


def test_broadcast_gives_every_rank_rank_zeros_object(ranks):
    assert all(r["broadcast"] == {"labels": [3, -1, 3]} for r in ranks)


def test_all_gather_batch_puts_every_source_row_before_every_target_row_in_rank_order(ranks):
    base = torch.arange(6.0).view(3, 2)
    want = torch.cat([base[:2], base[:2] + 10, base[2:], base[2:] + 10])
    for r in ranks:
        feats, targets, sources = r["batch"]
        assert torch.equal(feats, want) and targets.tolist() == [0, 1, 3, 4, 2, 5]
        assert sources == 4


def test_rank_batches_tile_each_batch_in_whole_identities(ranks):
    assert ranks[0]["rank_batches"] == [[0, 1, 2, 3], [8, 9, 10, 11]]
    assert ranks[1]["rank_batches"] == [[4, 5, 6, 7], [12, 13, 14, 15]]
    one = DistContext(rank=0, world_size=2)
    with pytest.raises(ValueError, match="batch of 6 images.*2 rank.*num_instances=2"):
        list(RankBatches([list(range(6))], one, 2))


@pytest.mark.parametrize("name", ["mlp", "bn"])
def test_ddp_halves_take_the_single_process_step_on_the_whole_batch(ranks, name):
    """With BatchNorm, the single process groups the batch in halves: one group per rank."""
    model = make_models()[name]
    start = copy.deepcopy(model)
    with bn_groups(model, ROWS // WORLD, "first", num_instances=2):
        outs = train_steps(model, batches()[name], slice(None))
    for r in ranks:
        for p, q in zip(r[name]["params"], model.parameters(), strict=True):
            torch.testing.assert_close(p, q.detach())
        for got, want in zip(r[name]["features"], outs, strict=True):  # the memory update's rows
            torch.testing.assert_close(got, want)
    moved = [
        not torch.equal(p, q) for p, q in zip(start.parameters(), model.parameters(), strict=True)
    ]
    assert all(moved)
    for key, value in model.named_buffers():  # rank 0's statistics are "first"'s
        torch.testing.assert_close(ranks[0][name]["buffers"][key], value)


def test_without_torchrun_the_context_is_one_process_and_every_op_is_identity(monkeypatch):
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    ctx = DistContext.from_env("cpu")
    assert (ctx.rank, ctx.world_size, ctx.distributed, ctx.is_main()) == (0, 1, False, True)
    x = torch.randn(5, 2)
    assert ctx.shard(5) == range(5) and ctx.all_gather_rows(x, [5]) is x
    assert ctx.broadcast_object([1]) == [1]
    (y,), sources = ctx.all_gather_batch(x, source_count=2)
    assert torch.equal(y, x) and sources == 2
    model = nn.Linear(2, 2)
    assert ctx.wrap(model) is model
    ctx.barrier()
    with pytest.raises(ValueError, match=r"holds 5 rows, counts say \[4\]"):
        ctx.all_gather_rows(x, [4])
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match=r"RANK=2.*WORLD_SIZE=2"):
        DistContext.from_env("cpu")
    monkeypatch.setenv("RANK", "one")
    with pytest.raises(ValueError, match="RANK='one': must be an integer"):
        DistContext.from_env("cpu")


@pytest.mark.parametrize("world", [1, 2, 3, 4, 7])
def test_shards_are_contiguous_cover_everything_and_differ_by_at_most_one(world):
    for n in [0, 1, 5, 12, 13, 100]:
        shards = [DistContext(rank=r, world_size=world).shard(n) for r in range(world)]
        assert [i for s in shards for i in s] == list(range(n))
        sizes = [len(s) for s in shards]
        assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def test_rank_device_takes_its_own_gpu_and_shares_only_when_asked(monkeypatch):
    from unreid.distributed import SHARE_GPUS, _share_gpus, rank_device

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert rank_device(cpu, 5, 0) == (cpu, "gloo")
    assert rank_device(cuda, 1, 2) == (torch.device("cuda", 1), "nccl")
    with pytest.raises(
        ValueError, match=rf"LOCAL_RANK=1 but this machine has 1 GPU.*{SHARE_GPUS}=1"
    ):
        rank_device(cuda, 1, 1)
    # two ranks on one GPU: the same device, over gloo (NCCL refuses a shared device)
    assert rank_device(cuda, 1, 1, share=True) == (torch.device("cuda", 0), "gloo")
    assert rank_device(cuda, 3, 2, share=True) == (torch.device("cuda", 1), "gloo")
    with pytest.raises(ValueError, match="has 0 GPU"):
        rank_device(cuda, 0, 0, share=True)
    monkeypatch.setenv(SHARE_GPUS, "yes")
    with pytest.raises(ValueError, match=f"{SHARE_GPUS}='yes': must be 0 or 1"):
        _share_gpus()
