"""What a method plugs into the training loop, and the registry that names them.

A method owns its memories and any extra trainable modules; it never touches
the optimizer, the loader or the device placement (the engine does). The
engine calls, per epoch: `clustering_features` (what the clusterer sees; the
raw features unless the method refines them), `start_epoch` (after
clustering; `training_labels` then says which label each image trains
under), then per batch `losses` → optimizer step → `update_memories`
(explicit, under no_grad).

A method that keeps a copy of the model (ICE's mean teacher) makes it in
`bind_model`, called once before the optimizer is built, and names the views
each training image is loaded in (`views`); the extra views reach `losses` as
`Batch.views`.

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

import numpy as np
import torch
from torch import nn

from unreid.data.samples import Sample
from unreid.memory.cluster_memory import ClusterMemory
from unreid.pseudo_labels import PseudoLabels
from unreid.registry import Registry
from unreid.settings import ClusterConfig


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
    # the images of the method's extra views (`Method.views[1:]`), one (B, 3, H, W)
    # tensor per view, same rows as `features`; empty for single-view methods
    views: tuple[torch.Tensor, ...] = ()


class Method(nn.Module):
    """Base class: `nn.Module` so extra trainable parts and memories move and save together."""

    name = "base"
    # The engine refuses a training set with fewer than two cameras for such a method.
    requires_cameras = False
    # Train-time views each image is loaded in, by name (data/transforms.py VIEWS): the
    # first is the one the model trains on, the others reach `losses` as `Batch.views`.
    # Empty: the data's one train transform (every method but ICE).
    views: tuple[str, ...] = ()
    # `Batch.extras` keys holding one value per row that `update_memories` reads: under
    # DDP they are gathered with the rows (the others are per-rank and dropped), so the
    # update sees what one process's forward computed, not a recomputation after the step.
    row_extras: tuple[str, ...] = ()

    def bind_model(self, model: nn.Module) -> None:
        """The model being trained, given once by the engine right after the method is built.

        A method that needs a copy of it (ICE's mean teacher) makes one here, keeping
        the copy's parameters out of the optimizer (`requires_grad=False`); the
        default keeps nothing. Called before a checkpoint is restored, so the copy's
        saved state loads into it.
        """

    def extraction_model(self, model: nn.Module) -> nn.Module:
        """The network whose features are clustered and evaluated, and which inference keeps.

        The model being trained, by default. A method with a mean teacher may answer
        with the teacher (ICE's code clusters, evaluates and saves its EMA model); the
        recorder then writes that network's weights as the run's inference weights.
        """
        return model

    def clustering_features(
        self, epoch: int, features: torch.Tensor, samples: list[Sample]
    ) -> torch.Tensor:
        """The (N, D') unit-norm features the pseudo labels are computed from."""
        return features

    def start_epoch(
        self, epoch: int, features: torch.Tensor, labels: PseudoLabels, cameras: torch.Tensor
    ) -> None:
        """Rebuild memories from this epoch's features (N, D) and pseudo labels."""

    def training_labels(self, labels: PseudoLabels) -> np.ndarray:
        """The label of every training image for this epoch's batches (-1 = sits out).

        Called after `start_epoch`. By default the clustering's labels, outliers out;
        a method that trains on more (SpCL's un-clustered instances as one-image
        classes) or less (its unreliable clusters broken up) returns its own.
        """
        return np.asarray(labels.labels)

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

    def diagnostics(self, true_ids: np.ndarray | None) -> dict[str, float]:
        """Numbers about this epoch's modules for `log.jsonl` (called once, after the epoch).

        By default, how far each cluster memory moved from its epoch-start rows
        (`ClusterMemory.start_cosine`); methods add their own (GCL's attention, SAA's
        dispersion; `methods/diagnostics.py`). ``true_ids`` is given when the
        training set's identities are known. Must not change any state training reads.
        """
        out = {}
        for name, module in self.named_modules():
            if isinstance(module, ClusterMemory) and (cos := module.start_cosine()) is not None:
                out[f"{name}_start_cosine"] = cos
        return out


@dataclass(frozen=True)
class MethodContext:
    """What a method may know of the run beyond its own section."""

    feature_dim: int
    num_instances: int = 16  # K of the P×K batch
    seed: int = 1
    # how the run clusters (SpCL re-clusters at looser and tighter radii)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    # a labelled source domain is part of the run (`data.source`)
    adapting: bool = False


@dataclass(frozen=True)
class MethodSpec:
    name: str
    config: type  # the method's config dataclass: its section of the run config
    factory: Callable[[Any, MethodContext], Method]
    # Adapts domains: needs a labelled source set (`data.source`); None = works with or
    # without one (SpCL: unsupervised alone, domain adaptation given a source).
    needs_source: bool | None = False


METHODS: Registry[MethodSpec] = Registry("method")


def register_method(
    name: str,
    config: type,
    factory: Callable[[Any, MethodContext], Method],
    *,
    needs_source: bool | None = False,
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
