"""BatchNorm over groups of whole identities: one GPU normalising as four DataParallel replicas did.

The reference recipes ran `nn.DataParallel` on 4 GPUs: the P×K batch was cut into
4 contiguous chunks and every BatchNorm layer normalised each chunk with that
chunk's own statistics (64 of 256 images, 4 whole identities). The same recipe
on one GPU normalises all 256 at once and loses 10-25 mAP. Inside
`bn_groups(model, G)` every BatchNorm layer of `model` normalises each
contiguous chunk of G rows with the chunk's own mean and variance, in one
forward pass of the whole batch: the chunks are laid side by side as extra
channels and normalised by one `F.batch_norm` call, which costs plain
BatchNorm plus a copy of the activation in and out.

Running statistics, two definitions:

- "first": DataParallel's exact behaviour. Its replicas are rebuilt every
  forward and only the one on the first device shares buffers with the
  module, so only chunk 0's update survives: the update a lone forward of
  chunk 0 makes.
- "mean": the average of the G per-chunk updates, i.e. momentum times the mean
  over chunks of (chunk mean, unbiased chunk variance). Averaging the
  variances of the chunks, not taking the variance of the whole batch, keeps
  the running variance the within-group spread that training normalised by
  (the whole batch's variance adds the spread between groups); each chunk's
  variance is unbiased (n / (n - 1)) as BatchNorm's own update is. It uses
  every image and so is less noisy than "first".

`num_batches_tracked` increments once per forward either way (DataParallel's
surviving replica counts one forward). Eval mode is untouched: the layers use
their running statistics as always. Domain-specific BN (`dsbn.py`) holds
ordinary BatchNorm layers, so each domain's rows are grouped the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "RUNNING_STATS",
    "bn_groups",
    "check_group_size",
    "fit_group_size",
    "grouped_batch_norm",
]

RUNNING_STATS = ("first", "mean")
_BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_NHWC = torch.channels_last
_KEY = "train.bn_group_size"
log = logging.getLogger("unreid")


def check_group_size(group_size: int, batch_size: int, num_instances: int, key: str = _KEY) -> None:
    """Refuse a group size that would split an identity or leave a partial group.

    `batch_size` is the rows one BatchNorm call sees: the per-device batch, or
    one domain's half of it under DSBN. Raises ValueError naming both numbers.
    """
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 0:
        raise ValueError(f"{key}={group_size!r}: must be an int >= 0 (0 = the whole batch)")
    if group_size == 0:
        return
    if num_instances < 1 or group_size % num_instances:
        raise ValueError(
            f"{key}={group_size} would split identities: it must be a multiple of "
            f"train.num_instances={num_instances} (K images per identity, contiguous)"
        )
    if batch_size % group_size:
        fits = [
            g for g in range(num_instances, batch_size + 1, num_instances) if not batch_size % g
        ]
        raise ValueError(
            f"{key}={group_size} does not divide the batch of {batch_size} rows into whole "
            f"groups; set {key}=0 (the whole batch is one group) or a multiple of "
            f"train.num_instances={num_instances} that divides {batch_size} "
            f"({', '.join(map(str, fits))}), or a train.batch_size that is a multiple of "
            f"{group_size}"
        )


def fit_group_size(group_size: int, batch_size: int, key: str = _KEY) -> int:
    """The group size to use: 0 (one group, the whole batch) for a batch smaller than a group.

    A preset's groups (64 images of a 256-image batch) reproduce a 4-GPU recipe;
    a batch cut to 16 for a small set or a CPU cannot hold one such group, and
    normalising it as one group is what the setting asks of any batch that is
    exactly one group. Said once in the log; a batch larger than a group and not
    a multiple of it is still refused by `check_group_size`.
    """
    if type(group_size) is int and group_size > batch_size > 0:
        log.info(
            "%s=%d is larger than the batch of %d rows: the whole batch is one group",
            key,
            group_size,
            batch_size,
        )
        return 0
    return group_size


def _factor(bn: nn.modules.batchnorm._BatchNorm) -> float:
    """The running-average weight BatchNorm would use for this forward (after counting it)."""
    bn.num_batches_tracked.add_(1)
    if bn.momentum is None:  # cumulative moving average
        return 1.0 / float(bn.num_batches_tracked)
    return float(bn.momentum)


def grouped_batch_norm(
    bn: nn.modules.batchnorm._BatchNorm,
    group_size: int,
    running_stats: str,
    x: torch.Tensor,
) -> torch.Tensor:
    """`bn(x)` with each contiguous chunk of `group_size` rows normalised on its own.

    Outside training this is `bn(x)` itself. In training the chunk statistics
    are biased (as BatchNorm normalises) and the running buffers get the
    update `running_stats` names (see the module doc).
    """
    plain = type(bn).forward
    rows = x.shape[0]
    if not bn.training or rows == group_size:
        return plain(bn, x)
    if rows % group_size:
        raise ValueError(
            f"{_KEY}={group_size} does not divide the batch of {rows} rows reaching "
            f"{type(bn).__name__}({bn.num_features}) into whole groups"
        )
    bn._check_input_dim(x)
    groups, channels = rows // group_size, x.shape[1]
    xs = x.reshape(groups, group_size, channels, -1)  # (G, n, C, spatial)
    count = group_size * xs.shape[-1]
    if count < 2:
        raise ValueError(
            f"{_KEY}={group_size}: BatchNorm needs more than 1 value per channel in a group, "
            f"got {count} (input shape {tuple(x.shape)})"
        )
    # Groups side by side as channels: (n, G*C, spatial), so one fused batch_norm call
    # computes every group's statistics (one copy in, one out; the autograd-chain
    # alternative of var_mean + affine costs about twice as much on CPU).
    side = xs.transpose(0, 1).reshape(group_size, groups * channels, -1)
    track = bn.track_running_stats and bn.running_mean is not None
    stats = None
    if track:  # momentum 1 leaves exactly the per-group mean and unbiased variance here
        kind = {"device": x.device, "dtype": bn.running_mean.dtype}
        stats = (torch.zeros(groups * channels, **kind), torch.ones(groups * channels, **kind))
    y = F.batch_norm(
        side,
        stats[0] if stats else None,
        stats[1] if stats else None,
        bn.weight.repeat(groups) if bn.weight is not None else None,
        bn.bias.repeat(groups) if bn.bias is not None else None,
        True,
        1.0,
        bn.eps,
    )
    back = y.view(group_size, groups, channels, -1).transpose(0, 1)  # (G, n, C, spatial)
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=_NHWC):
        out = back.transpose(2, 3).reshape(rows, *x.shape[2:], channels).permute(0, 3, 1, 2)
    else:
        out = back.reshape(x.shape)
    if stats is not None:
        with torch.no_grad():
            momentum = _factor(bn)
            mean, var = stats[0].view(groups, channels), stats[1].view(groups, channels)
            if running_stats == "first":
                new_mean, new_var = mean[0], var[0]
            else:
                new_mean, new_var = mean.mean(0), var.mean(0)
            bn.running_mean.mul_(1 - momentum).add_(new_mean, alpha=momentum)
            bn.running_var.mul_(1 - momentum).add_(new_var, alpha=momentum)
    return out


@contextmanager
def bn_groups(
    model: nn.Module,
    group_size: int,
    running_stats: str = "first",
    num_instances: int | None = None,
) -> Iterator[int]:
    """Within the block, every BatchNorm of `model` normalises chunks of `group_size` rows.

    `group_size` 0 leaves the model alone (the whole per-device batch is one
    group). `num_instances` (K of the P×K batch) makes a group size that would
    split an identity an error up front; the batch itself is checked at every
    forward. Yields the number of BatchNorm layers grouped. Entering the
    block once for a whole run is fine: eval-mode forwards are unchanged, so
    extraction and evaluation inside it behave as outside.
    """
    if running_stats not in RUNNING_STATS:
        raise ValueError(
            f"train.bn_running_stats={running_stats!r}: must be one of {', '.join(RUNNING_STATS)}"
        )
    check_group_size(group_size, group_size, num_instances or 1)
    if group_size == 0:
        yield 0
        return
    layers = [m for m in model.modules() if isinstance(m, _BN_TYPES)]
    if any("forward" in vars(m) for m in layers):
        raise RuntimeError("bn_groups: the model's BatchNorm layers are already grouped")
    for m in layers:  # an instance attribute shadows the class's forward
        m.forward = partial(grouped_batch_norm, m, group_size, running_stats)
    try:
        yield len(layers)
    finally:
        for m in layers:
            del m.forward
