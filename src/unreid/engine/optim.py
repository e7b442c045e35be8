"""The run's optimizer: Adam or SGD, optionally without weight decay on norms, biases and tokens.

`build_optimizer` takes named parameters (the model's, then the method's as
`method.<name>`) because the weight-decay split is decided by name and shape.
With the defaults (`train.optimizer=adam`, `train.no_weight_decay=none`) it builds
`Adam(params, lr, weight_decay)` with one parameter group, as the runs always had,
in torch's fused kernel (`train.fused_optimizer`): the same update to float
rounding, about 5x faster a step than the per-tensor loop on CPU (ResNet-18, one
thread: 16 vs 82 ms). The state dict is the loop's, so checkpoints of either resume.

`train.no_weight_decay=norm_bias_tokens` is timm's rule for vision transformers
(its `param_groups_weight_decay`: `ndim <= 1`, a name ending in `.bias`, or a name
the model's `no_weight_decay()` lists, {pos_embed, cls_token, dist_token} for a ViT):
norm weights, biases and the learned position / class / camera tokens (a last name
component ending in `pos_embed`, `cls_token` or `camera_embed`) train with weight
decay 0, everything else with `train.weight_decay`. These set offsets and scales
rather than the capacity weight decay is meant to limit, and decaying a learned
position embedding pulls it away from its pre-trained values.

What the reference codes do (facts, for choosing settings):

- TransReID-SSL's unsupervised training (damo-cv/TransReID-SSL,
  cluster-contrast-reid/examples/cluster_contrast_train_usl.py): `--optimizer SGD`
  by default, momentum 0.9 (hard-coded), lr 3.5e-4, weight decay 5e-4 on every
  parameter (no exclusions), StepLR(step 20, gamma 0.1), 50 epochs. Here:
  `optimizer=sgd`, the default lr / weight decay / step schedule.
- TransReID-SSL's supervised fine-tuning (transreid_pytorch/solver/make_optimizer.py,
  configs/*/vit_*.yml): SGD momentum 0.9, weight decay 1e-4 (biases 1e-4 too), a
  bias learning rate ×2 (`BIAS_LR_FACTOR: 2`, matched as "bias" anywhere in the
  name) and a cosine schedule with warm-up. The bias learning-rate factor is not
  offered here: neither unsupervised reference uses it (PCL-CLIP's is 1.0).
- PCL-CLIP-USL (Trangle12/PCL-CLIP-USL, clip_cc/utils/prepare_optimizer.py):
  SGD momentum 0.9, lr 3.5e-4 and weight decay 5e-4 hard-coded for every
  parameter (its --lr / --weight-decay flags are not read), CAP's warm-up × step
  schedule (10 epochs from 0.01×, ×0.1 at 20 and 40). Here: `optimizer=sgd`,
  `warmup_epochs=10`.
- Neither reference excludes anything from weight decay: TransReID-SSL's ViTs
  define timm's `no_weight_decay()` ({pos_embed, cls_token}) but its optimizers
  never call it, and PCL-CLIP's CLIP encoder has no such list. `norm_bias_tokens`
  is therefore an option for new recipes, not a reproduction.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from unreid.settings import TrainConfig

__all__ = ["NO_DECAY_NAMES", "build_optimizer", "param_groups", "skips_weight_decay"]

# Learned tokens that keep weight decay 0 under no_weight_decay=norm_bias_tokens, matched
# against the end of a parameter's last name component (`backbone.pos_embed`).
NO_DECAY_NAMES = ("pos_embed", "cls_token", "camera_embed")

NamedParams = Iterable[tuple[str, nn.Parameter]]


def skips_weight_decay(name: str, param: torch.Tensor) -> bool:
    """Whether `norm_bias_tokens` trains `param` without weight decay (see the module doc)."""
    last = name.rsplit(".", 1)[-1]
    return param.ndim <= 1 or last == "bias" or last.endswith(NO_DECAY_NAMES)


def param_groups(
    named_params: NamedParams, train_cfg: TrainConfig
) -> list[nn.Parameter] | list[dict[str, Any]]:
    """What the optimizer receives: a plain list (one group, as always) under
    `no_weight_decay=none`; otherwise the decayed group, then the group at weight decay
    0, either left out when empty. Parameter order within a group is the given order."""
    named = list(named_params)
    if train_cfg.no_weight_decay == "none":
        return [p for _, p in named]
    decay = [p for n, p in named if not skips_weight_decay(n, p)]
    no_decay = [p for n, p in named if skips_weight_decay(n, p)]
    groups = [
        {"params": decay, "weight_decay": train_cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def build_optimizer(named_params: NamedParams, train_cfg: TrainConfig) -> torch.optim.Optimizer:
    """The run's optimizer over `named_params` (already filtered on `requires_grad`)."""
    t = train_cfg
    params = param_groups(named_params, t)
    # fused=None is torch's per-tensor loop on CPU (foreach on CUDA); True its fused kernel
    fused = True if t.fused_optimizer else None
    if t.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay, fused=fused
        )
    return torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay, fused=fused)
