"""ICE (Chen et al., ICCV 2021): inter-instance contrastive encoding on camera-aware proxies.

Three terms (losses/ice.py), summed with weights:

- proxy contrast: each sample against the camera-aware proxies (one centroid
  per cluster and camera), all of its cluster's proxies positive, the 50
  hardest other proxies negative;
- hard instance contrast: the student's strong view against a mean teacher's
  second strong view of the batch, the least similar same-cluster instance
  as the positive, the other clusters' instances as negatives;
- soft instance consistency: the teacher's similarities among the weak views
  are the soft target (KL) for the student-to-teacher strong-view ones.

Teacher and views: `bind_model` deep-copies the model into `self.teacher`, a
mean teacher whose parameters follow the student's by EMA after every
optimizer step (`update_memories`: θ_t ← α·θ_t + (1−α)·θ_s, parameters only;
its BatchNorm statistics are its own, from its train-mode forwards, as in the
code). Each image is loaded as three views (`views`): "strong" (the student's),
"strong" again and "weak" (the teacher's), from data/transforms.py.

Paper and code (chenhao2345/ICE) differ; `ice.form` picks (the paper text was
not at hand when this was written: where a detail could come from either, the
docs say so):

- form=paper (default): the proxy term is averaged over the batch, and the
  proxies follow CAP, ICE's stated baseline: each sample moves its proxy with
  momentum `proxy_momentum` after the step.
- form=code: ice/trainers.py as released: the proxy term sums each camera's
  mean, the proxies stay at the epoch-start centroids (the memory update is
  commented out), and a fourth term is on: label-smoothed cross-entropy
  against the epoch-start cluster centroids at temperature 0.5.

Which network is extracted (`ice.extract_with`): the code clusters the mean
teacher's features every epoch, builds the proxies from them, evaluates the
teacher and saves it (examples/unsupervised_train.py), so "teacher" is the
default: the loop asks `extraction_model` for the network to extract, and the
run's inference weights are the teacher's. "student" extracts, evaluates and
keeps the trained model (this implementation's behaviour before issue 33).

Weights and temperatures default to the code's values (proxy 0.5 at τ 0.07,
instance 1 at τ 0.1, consistency 10 at τ 0.4, α 0.999).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from unreid.errors import check, check_choice, check_range
from unreid.losses import cluster_nce
from unreid.losses.ice import ice_hard_instance_nce, ice_proxy_nce, ice_soft_consistency
from unreid.memory.camera_proxy_memory import CameraProxyMemory
from unreid.memory.policies import MomentumClusterMemory
from unreid.methods.base import Batch, Method, MethodContext, register_method
from unreid.models.bn_groups import bn_groups
from unreid.pseudo_labels import PseudoLabels

FORMS = ("paper", "code")
EXTRACT_WITH = ("teacher", "student")
# Batch.extras keys: the teacher's features of the second strong view and of the weak view
TEACHER_STRONG, TEACHER_WEAK = "teacher_strong", "teacher_weak"


@dataclass
class ICEConfig:
    """ICE's section: which terms, their weights and temperatures, the teacher, paper or code."""

    # "paper": proxy term averaged over the batch, proxies updated with momentum.
    # "code": the released trainer: per-camera sum, static proxies, + the cluster term.
    form: str = "paper"
    proxy_weight: float = 0.5
    proxy_temperature: float = 0.07
    hard_negatives: int = 50
    # Proxy momentum (weight of the OLD row, as everywhere here); form=paper only.
    proxy_momentum: float = 0.2
    instance_weight: float = 1.0
    instance_temperature: float = 0.1
    consistency_weight: float = 10.0
    consistency_temperature: float = 0.4
    # Mean teacher: θ_t ← ema_momentum·θ_t + (1 − ema_momentum)·θ_s after every step.
    ema_momentum: float = 0.999
    # ShuffleBN as the code runs it on 4 GPUs: the teacher's batch shuffled and its
    # BatchNorm statistics taken per this many images; 0 = the whole batch.
    teacher_bn_group_size: int = 0
    # form=code only: label-smoothed CE against the epoch-start cluster centroids.
    cluster_weight: float = 1.0
    cluster_temperature: float = 0.5
    cluster_label_smoothing: float = 0.1
    # The network whose features are clustered and evaluated, and whose weights inference
    # keeps: "teacher" (ICE's code: its EMA model throughout) or "student" (the trained one).
    extract_with: str = "teacher"

    def __post_init__(self) -> None:
        check_choice("form", self.form, FORMS)
        check_choice("extract_with", self.extract_with, EXTRACT_WITH)
        for key in ("proxy_weight", "instance_weight", "consistency_weight", "cluster_weight"):
            check_range(key, getattr(self, key), 0.0)
        for key in (
            "proxy_temperature",
            "instance_temperature",
            "consistency_temperature",
            "cluster_temperature",
        ):
            check_range(key, getattr(self, key), 0.0, low_open=True)
        check_range("hard_negatives", self.hard_negatives, 1)
        check_range("proxy_momentum", self.proxy_momentum, 0.0, 1.0)
        check_range("ema_momentum", self.ema_momentum, 0.0, 1.0)
        check_range("teacher_bn_group_size", self.teacher_bn_group_size, 0)
        check_range("cluster_label_smoothing", self.cluster_label_smoothing, 0.0, 1.0)
        check(
            "proxy_weight",
            self.proxy_weight,
            bool(self.terms),
            "every term is off: give proxy_weight, instance_weight or consistency_weight > 0",
        )

    @property
    def terms(self) -> tuple[str, ...]:
        """The loss terms that are on, by their names in the log."""
        on = {
            "proxy_nce": self.proxy_weight > 0,
            "cluster_ce": self.form == "code" and self.cluster_weight > 0,
            "hard_instance": self.instance_weight > 0,
            "soft_instance": self.consistency_weight > 0,
        }
        return tuple(name for name, yes in on.items() if yes)

    @property
    def uses_teacher(self) -> bool:
        return self.instance_weight > 0 or self.consistency_weight > 0

    def views(self) -> tuple[str, ...]:
        """The student's view, then the teacher's: a second strong view, and the weak one."""
        if not self.uses_teacher:
            return ("strong",)
        return ("strong", "strong", "weak") if self.consistency_weight > 0 else ("strong", "strong")

    def ignored(self) -> dict[str, str]:
        out: dict[str, str] = {}
        if self.form == "code":
            out["proxy_momentum"] = "ice.form=code (static proxies)"
        else:
            out.update({k: "ice.form=paper" for k in ("cluster_weight", "cluster_temperature",
                                                       "cluster_label_smoothing")})  # fmt: skip
        for weight, keys in (
            ("proxy_weight", ("proxy_temperature", "hard_negatives", "proxy_momentum")),
            ("instance_weight", ("instance_temperature",)),
            ("consistency_weight", ("consistency_temperature",)),
        ):
            if getattr(self, weight) == 0:
                out.update({k: f"ice.{weight}=0" for k in keys})
        if not self.uses_teacher:
            why = "no teacher term (ice.instance_weight=ice.consistency_weight=0)"
            out.update({k: why for k in ("ema_momentum", "teacher_bn_group_size", "extract_with")})
        return out

    def run_checks(self, cfg: Any) -> list[tuple[str, bool, str]]:
        """Cross-section checks: the loader must make the views, the teacher's groups fit."""
        t, g = cfg.train, self.teacher_bn_group_size
        return [
            (
                "data.decoded_cache",
                not cfg.data.decoded_cache,
                "method=ice loads each image as several views (student and teacher); the "
                "decoded cache's batch augmentation makes one. Set data.decoded_cache=false",
            ),
            (
                "ice.teacher_bn_group_size",
                not g or t.batch_size % g == 0,
                f"must divide train.batch_size ({t.batch_size})",
            ),
        ]


class ICE(Method):
    name = "ice"
    requires_cameras = True

    def __init__(self, cfg: ICEConfig, feature_dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.views = cfg.views()
        code = cfg.form == "code"
        # the code never moves its proxies: momentum 1 keeps every row as it was built
        self.proxies = CameraProxyMemory(feature_dim, 1.0 if code else cfg.proxy_momentum)
        self.centroids = (
            MomentumClusterMemory(feature_dim, 1.0) if "cluster_ce" in cfg.terms else None
        )
        self.teacher: nn.Module | None = None
        self._student: tuple[nn.Module, ...] = ()  # a tuple: not a submodule, not saved

    def bind_model(self, model: nn.Module) -> None:
        """The mean teacher starts as a copy of the model; the student is kept for the EMA."""
        if not self.cfg.uses_teacher:
            return
        teacher = copy.deepcopy(model)
        for p in teacher.parameters():
            p.requires_grad_(False)
        self.teacher = teacher
        self._student = (model,)

    def extraction_model(self, model: nn.Module) -> nn.Module:
        """The teacher under `ice.extract_with=teacher` (ICE's code extracts, evaluates and
        saves `model_1_ema`), so the proxies start from its features too; else the model."""
        if self.cfg.extract_with == "teacher" and self.teacher is not None:
            return self.teacher
        return model

    def start_epoch(
        self, epoch: int, features: torch.Tensor, labels: PseudoLabels, cameras: torch.Tensor
    ) -> None:
        ids = torch.tensor(labels.labels, device=features.device)
        self.proxies.reset(features, ids, cameras.to(features.device))
        if self.centroids is not None:
            self.centroids.reset(labels.centroids(features))

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        c, x, y = self.cfg, batch.features, batch.targets
        out: dict[str, torch.Tensor] = {}
        if c.proxy_weight > 0:
            out["proxy_nce"] = c.proxy_weight * ice_proxy_nce(
                x, y, batch.cameras, self.proxies.bank, self.proxies.proxy_cluster,
                c.proxy_temperature, c.hard_negatives,
                "per_camera_sum" if c.form == "code" else "mean",
            )  # fmt: skip
        if self.centroids is not None:
            out["cluster_ce"] = c.cluster_weight * cluster_nce(
                x, y, self.centroids.bank, c.cluster_temperature, c.cluster_label_smoothing
            )
        if c.uses_teacher and self.teacher_features(batch):
            strong = batch.extras[TEACHER_STRONG]
            if c.instance_weight > 0:
                out["hard_instance"] = c.instance_weight * ice_hard_instance_nce(
                    x, strong, y, c.instance_temperature
                )
            if c.consistency_weight > 0:
                out["soft_instance"] = c.consistency_weight * ice_soft_consistency(
                    x, strong, batch.extras[TEACHER_WEAK], c.consistency_temperature
                )
        return out

    def teacher_features(self, batch: Batch) -> bool:
        """Put the teacher's features of the batch's extra views into `batch.extras`.

        True when they are there (already, or computed now). Without a bound model
        (the method used on its own, as in unit tests on hand-made features) there
        is no teacher and the instance terms sit out: False. A bound teacher with
        a batch lacking the views is an error: the loader did not make them.
        """
        needed = [TEACHER_STRONG] + ([TEACHER_WEAK] if self.cfg.consistency_weight > 0 else [])
        if all(k in batch.extras for k in needed):
            return True
        if self.teacher is None:
            return False
        if len(batch.views) != len(needed):
            raise ValueError(
                f"ICE's teacher needs the batch's extra views {self.views[1:]}, found "
                f"{len(batch.views)}: the training images must be loaded as `Method.views`"
            )
        for key, images in zip(needed, batch.views, strict=True):
            batch.extras[key] = self.teacher_forward(images)
        return True

    @torch.no_grad()
    def teacher_forward(self, images: torch.Tensor) -> torch.Tensor:
        """The teacher's features (train-mode BatchNorm, as the code), under ShuffleBN if set."""
        assert self.teacher is not None
        g = self.cfg.teacher_bn_group_size
        if not g:
            return self.teacher(images).float()
        order = torch.randperm(images.shape[0], device=images.device)
        with bn_groups(self.teacher, g):
            shuffled = self.teacher(images[order]).float()
        return shuffled[torch.argsort(order)]

    @torch.no_grad()
    def update_teacher(self, student: nn.Module) -> None:
        """θ_t ← α·θ_t + (1−α)·θ_s over the parameters (buffers stay the teacher's own)."""
        assert self.teacher is not None
        a = self.cfg.ema_momentum
        pairs = zip(self.teacher.parameters(), student.parameters(), strict=True)
        for t, s in pairs:
            t.mul_(a).add_(s.detach(), alpha=1.0 - a)

    @torch.no_grad()
    def update_memories(self, batch: Batch) -> None:
        if self.cfg.form == "paper" and self.cfg.proxy_weight > 0:
            self.proxies.update(batch.features, batch.targets, batch.cameras)
        if self.teacher is not None and self._student:
            self.update_teacher(self._student[0])


def _build(cfg: ICEConfig, ctx: MethodContext) -> Method:
    return ICE(cfg, ctx.feature_dim)


register_method("ice", ICEConfig, _build)
