"""What a method plugs into the training loop, and the registry that names them.

A method owns its memories and any extra trainable modules; it never touches
the optimizer, the loader or the device placement (the engine does). The
engine calls, per epoch: `clustering_features` (what the clusterer sees; the
raw features unless the method refines them), `start_epoch` (after
clustering), then per batch `losses` → optimizer step → `update_memories`
(explicit, under no_grad).

Domain adaptation adds a labelled source set: when `wants_source_features`
says so, the engine extracts the source images and calls `start_source`
before `start_epoch`, and each batch holds `source_count` source samples
ahead of the target ones.

Each method registers `(name, config class, factory)`: the config class is
its own section of the run config (checked when the config is loaded), and
the factory receives that section plus what the method needs from the rest
of the run, passed explicitly (`MethodContext`), never the whole config.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from unreid.data.samples import Sample
from unreid.pseudo_labels import PseudoLabels
from unreid.registry import Registry


@dataclass
class Batch:
    """One P×K mini-batch: embeddings and what the epoch knows about each image."""

    features: torch.Tensor  # (B, D) model output, L2-normalised, with grad
    targets: torch.Tensor  # (B,) pseudo label (cluster id, 0..C-1)
    cameras: torch.Tensor  # (B,) camera id
    indexes: torch.Tensor  # (B,) index into the epoch's training samples (source ones first)
    # what `losses` computed and `update_memories` reuses (e.g. GCL's x_hat)
    extras: dict[str, torch.Tensor] = field(default_factory=dict)
    # domain adaptation: the first `source_count` rows are labelled source samples,
    # whose `targets` are source class ids and `cameras` source cameras
    source_count: int = 0


class Method(nn.Module):
    """Base class: `nn.Module` so extra trainable parts and memories move and save together."""

    name = "base"
    # The engine refuses a training set with fewer than two cameras for such a method.
    requires_cameras = False

    def clustering_features(
        self, epoch: int, features: torch.Tensor, samples: list[Sample]
    ) -> torch.Tensor:
        """The (N, D') unit-norm features the pseudo labels are computed from."""
        return features

    def start_epoch(
        self, epoch: int, features: torch.Tensor, labels: PseudoLabels, cameras: torch.Tensor
    ) -> None:
        """Rebuild memories from this epoch's features (N, D) and pseudo labels."""

    def wants_source_features(self, epoch: int) -> bool:
        """Whether the engine should extract the source set before this epoch (UDA only)."""
        return False

    def start_source(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Source features (N_s, D) and class ids (N_s,), when `wants_source_features`."""

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    @torch.no_grad()
    def update_memories(self, batch: Batch) -> None:
        """Called after the optimizer step with detached features."""


@dataclass(frozen=True)
class MethodContext:
    """What a method may know of the run beyond its own section."""

    feature_dim: int
    num_instances: int = 16  # K of the P×K batch
    seed: int = 1


@dataclass(frozen=True)
class MethodSpec:
    name: str
    config: type  # the method's config dataclass: its section of the run config
    factory: Callable[[Any, MethodContext], Method]
    # Adapts domains: needs a labelled source set (`data.source`).
    needs_source: bool = False


METHODS: Registry[MethodSpec] = Registry("method")


def register_method(
    name: str,
    config: type,
    factory: Callable[[Any, MethodContext], Method],
    *,
    needs_source: bool = False,
) -> MethodSpec:
    return METHODS.register(name, MethodSpec(name, config, factory, needs_source))


def list_methods() -> list[str]:
    return METHODS.names()


def build_method(name: str, section: Any, context: MethodContext) -> Method:
    """The method `name` from its config section (an instance of its registered class)."""
    spec = METHODS.get(name)
    if not isinstance(section, spec.config):
        raise TypeError(
            f"method {name!r} takes a {spec.config.__name__} section, got {type(section).__name__}"
        )
    return spec.factory(section, context)
