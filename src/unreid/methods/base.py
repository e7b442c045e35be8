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
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from unreid.config import Config
from unreid.data.samples import Sample
from unreid.pseudo_labels import PseudoLabels


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

    def describe(self) -> str:
        return self.name


METHODS: dict[str, Callable[[Config, int], Method]] = {}


def register_method(name: str) -> Callable:
    def wrap(factory: Callable[[Config, int], Method]) -> Callable[[Config, int], Method]:
        if name in METHODS:
            raise ValueError(f"method {name!r} registered twice")
        METHODS[name] = factory
        return factory

    return wrap


def build_method(cfg: Config, feature_dim: int) -> Method:
    import unreid.methods  # noqa: F401  (registers the built-in methods)

    if cfg.method not in METHODS:
        raise ValueError(f"method={cfg.method!r}; available: {', '.join(sorted(METHODS))}")
    return METHODS[cfg.method](cfg, feature_dim)
