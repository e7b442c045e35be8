"""Several processes training one model (torchrun + DDP), and the single process as its special case.

The engine needs few collective operations, and each one keeps every rank's
view of the run identical rather than approximately so:

- extraction is sharded (`shard`) and gathered back in dataset order
  (`all_gather_rows`), so every rank holds the same (N, D) features;
- pseudo labels are computed once and sent to all (`broadcast_object`), so
  clustering's ties and thread counts cannot make ranks disagree; the kNN and
  Jaccard rows before it may be sharded (`pseudo_labels.sharded`), their
  pieces gathered on rank 0 (`gather_object`);
- each step's P×K batch is cut into contiguous per-rank shares of whole
  identities (`RankBatches`), and the step's features and targets are gathered
  back in rank order (`all_gather_batch`), which is the single-process batch
  order, so every rank applies the same memory update in the same order.

DDP averages gradients over ranks, and each rank's loss is a mean over its
share, so a step equals the single-process step on the whole batch whenever the
loss is a mean of per-sample terms and BatchNorm sees one group per rank
(`models/bn_groups.py` makes a single process do the same). Not launched by
torchrun, `DistContext.from_env` gives a one-process context whose operations
return their input, so callers need no branches.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["SHARE_GPUS", "DistContext", "RankBatches", "rank_device"]


def _env_int(name: str) -> int:
    value = os.environ[name]
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r}: must be an integer") from None


SHARE_GPUS = "UNREID_SHARE_GPUS"  # "1": more ranks than GPUs (a check of DDP on one GPU)


def _share_gpus() -> bool:
    value = os.environ.get(SHARE_GPUS, "0")
    if value not in ("0", "1"):
        raise ValueError(f"environment variable {SHARE_GPUS}={value!r}: must be 0 or 1")
    return value == "1"


def rank_device(
    want: torch.device, local_rank: int, gpus: int, share: bool = False
) -> tuple[torch.device, str]:
    """The device and process-group backend of local rank `local_rank`.

    On CUDA each rank takes GPU `local_rank` and talks over NCCL. More ranks than
    GPUs is a launch mistake unless `share` (UNREID_SHARE_GPUS=1) asks for it, as a
    check of DDP on a one-GPU machine does: ranks then share GPU `local_rank % gpus`
    over gloo, since NCCL refuses two ranks on one device.
    """
    if want.type != "cuda":
        return want, "gloo"
    if local_rank < gpus:
        return torch.device("cuda", local_rank), "nccl"
    if not share or gpus == 0:
        raise ValueError(
            f"LOCAL_RANK={local_rank} but this machine has {gpus} GPU(s)"
            + ("" if gpus == 0 else f"; set {SHARE_GPUS}=1 to let ranks share them (over gloo)")
        )
    return torch.device("cuda", local_rank % gpus), "gloo"


@dataclass(frozen=True)
class DistContext:
    """This process's place in the run: rank, world size, local rank, device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @classmethod
    def from_env(
        cls, device: torch.device | str = "auto", timeout_s: float = 1800.0
    ) -> DistContext:
        """Read torchrun's RANK / WORLD_SIZE / LOCAL_RANK and join the process group.

        `device` "auto" means CUDA when available. Several processes on CUDA
        take GPU `LOCAL_RANK` each and talk over NCCL; on CPU over gloo. Not
        launched by torchrun (no WORLD_SIZE) or with one process: a
        single-process context, no process group.
        """
        want = torch.device(
            ("cuda" if torch.cuda.is_available() else "cpu") if str(device) == "auto" else device
        )
        if "WORLD_SIZE" not in os.environ or _env_int("WORLD_SIZE") == 1:
            return cls(device=want)
        world, rank = _env_int("WORLD_SIZE"), _env_int("RANK")
        local = _env_int("LOCAL_RANK") if "LOCAL_RANK" in os.environ else rank
        if not 0 <= rank < world or local < 0:
            raise ValueError(
                f"RANK={rank}, LOCAL_RANK={local}, WORLD_SIZE={world}: "
                "need 0 <= RANK < WORLD_SIZE and LOCAL_RANK >= 0"
            )
        want, backend = rank_device(want, local, torch.cuda.device_count(), _share_gpus())
        if want.type == "cuda":
            torch.cuda.set_device(want)
        if not dist.is_initialized():
            dist.init_process_group(
                backend, rank=rank, world_size=world, timeout=timedelta(seconds=timeout_s)
            )
        return cls(rank, world, local, want)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def is_main(self) -> bool:
        """Rank 0: the process that logs, writes the run folder and saves checkpoints."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def close(self) -> None:
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()

    def counts(self, n: int) -> list[int]:
        """How many of `n` items each rank takes: contiguous shares differing by at most 1."""
        if n < 0:
            raise ValueError(f"cannot shard {n} items")
        base, extra = divmod(n, self.world_size)
        return [base + (r < extra) for r in range(self.world_size)]

    def shard(self, n: int) -> range:
        """This rank's contiguous share of items 0..n-1 (the first n % world ranks get one more)."""
        counts = self.counts(n)
        start = sum(counts[: self.rank])
        return range(start, start + counts[self.rank])

    def all_gather_rows(self, tensor: torch.Tensor, counts: Sequence[int]) -> torch.Tensor:
        """Every rank's rows (rank r holds `counts[r]`) concatenated in rank order, on every rank.

        With `shard`'s counts this is the (N, ...) tensor in global order.
        Uneven counts are padded to the largest for the collective. Not
        differentiable; the result is on the input's device.
        """
        if len(counts) != self.world_size or tensor.shape[0] != counts[self.rank]:
            raise ValueError(
                f"all_gather_rows: rank {self.rank} holds {tensor.shape[0]} rows, counts say "
                f"{list(counts)} for {self.world_size} rank(s)"
            )
        longest = max(counts)
        if not self.distributed or longest == 0:
            return tensor
        local = tensor.detach().to(self.device)
        if local.shape[0] < longest:
            pad = local.new_zeros((longest - local.shape[0], *local.shape[1:]))
            local = torch.cat([local, pad])
        parts = [torch.empty_like(local) for _ in range(self.world_size)]
        dist.all_gather(parts, local.contiguous())
        return torch.cat([p[:c] for p, c in zip(parts, counts, strict=True)]).to(tensor.device)

    def broadcast_object(self, obj: Any, src: int = 0) -> Any:
        """`obj` as rank `src` has it (pickled), on every rank; e.g. this epoch's pseudo labels."""
        if not self.distributed:
            return obj
        box = [obj if self.rank == src else None]
        dist.broadcast_object_list(box, src=src, device=self.device)
        return box[0]

    def gather_object(self, obj: Any, dst: int = 0) -> list[Any] | None:
        """Every rank's `obj` (pickled) in rank order on rank `dst`, None elsewhere.

        For results too uneven for a tensor collective: each rank's share of the
        sparse Jaccard graph, gathered where DBSCAN runs.
        """
        if not self.distributed:
            return [obj]
        box = [None] * self.world_size if self.rank == dst else None
        dist.gather_object(obj, box, dst=dst)
        return box

    def all_gather_batch(
        self, *tensors: torch.Tensor, source_count: int = 0
    ) -> tuple[list[torch.Tensor], int]:
        """One step's rows from all ranks, as one process would hold the whole batch.

        Each rank passes its share (same row count in every tensor), source
        rows first when adapting domains. Returns the tensors with every
        rank's source rows in rank order, then every rank's target rows in
        rank order, and the batch's total source count. Detached: for the
        memory update after the step.
        """
        rows = {t.shape[0] for t in tensors}
        if len(rows) != 1 or not 0 <= source_count <= min(rows):
            raise ValueError(
                f"all_gather_batch: tensors with {sorted(rows)} rows and source_count="
                f"{source_count}; expected one row count >= source_count"
            )
        if not self.distributed:
            return [t.detach() for t in tensors], source_count
        sizes = torch.tensor([source_count, rows.pop()], device=self.device)
        every = [torch.empty_like(sizes) for _ in range(self.world_size)]
        dist.all_gather(every, sizes)
        src_counts = [int(s[0]) for s in every]
        tgt_counts = [int(s[1] - s[0]) for s in every]
        out = []
        for t in tensors:
            src = self.all_gather_rows(t[:source_count], src_counts)
            tgt = self.all_gather_rows(t[source_count:], tgt_counts)
            out.append(torch.cat([src, tgt]))
        return out, sum(src_counts)

    def mean_values(self, values: dict[str, float]) -> dict[str, float]:
        """Each named number averaged over the ranks (the same dict on every rank)."""
        if not self.distributed or not values:
            return values
        names = sorted(values)
        t = torch.tensor([values[n] for n in names], dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return {n: float(v) / self.world_size for n, v in zip(names, t.tolist(), strict=True)}

    def average_gradients(self, params: Iterable[nn.Parameter]) -> None:
        """Average the gradients of parameters DDP does not manage (a method's own modules)."""
        if not self.distributed:
            return
        for p in params:
            if p.grad is not None:
                dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
                p.grad.div_(self.world_size)

    def wrap(self, model: nn.Module) -> nn.Module:
        """`model` under DistributedDataParallel when distributed, else `model` itself.

        DDP broadcasts rank 0's buffers at every forward, so BatchNorm running
        statistics follow rank 0's share: DataParallel's behaviour, and
        `bn_groups(..., running_stats="first")`'s.
        """
        if not self.distributed:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)


class RankBatches:
    """A batch sampler's batches cut to this rank's contiguous share, whole identities each.

    Every rank runs the same seeded sampler, so the ranks' shares tile the
    batch one process would have drawn, in order.
    """

    def __init__(self, batches: Iterable[list[int]], ctx: DistContext, num_instances: int) -> None:
        self.batches, self.ctx, self.num_instances = batches, ctx, num_instances

    def __len__(self) -> int:
        return len(self.batches)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[list[int]]:
        step = self.ctx.world_size * self.num_instances
        for batch in self.batches:
            if len(batch) % step:
                raise ValueError(
                    f"a batch of {len(batch)} images cannot be shared by {self.ctx.world_size} "
                    f"rank(s) in whole identities of train.num_instances={self.num_instances}"
                )
            share = len(batch) // self.ctx.world_size
            yield list(batch[self.ctx.rank * share : (self.ctx.rank + 1) * share])
