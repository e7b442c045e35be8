"""A method built from its config section on 12 tiny features with 3 clusters and an outlier."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from unreid.config import load_config
from unreid.methods import Batch, MethodContext, build_method
from unreid.pseudo_labels import PseudoLabels

D = 8
LABELS = [0, 0, 0, 1, 1, 1, 2, 2, 2, -1, 1, 0]


def _setup(method: str, *overrides: str):
    source = ["data.source=market1501"] if method == "spcl_uda" else []
    if method == "spcl":  # its self-paced step re-clusters the 12 features
        source += ["cluster.k1=4", "cluster.k2=2"]
    cfg = load_config(
        None,
        [f"method={method}", "train.num_instances=2", "train.batch_size=4", *source, *overrides],
    )
    g = torch.Generator().manual_seed(0)
    feats = F.normalize(torch.randn(12, D, generator=g), dim=1)
    labels = PseudoLabels(torch.tensor(LABELS).numpy())
    context = MethodContext(
        D, cfg.train.num_instances, cfg.train.seed, cfg.cluster, adapting=bool(cfg.data.source)
    )
    m = build_method(cfg.method, cfg.method_cfg, context)
    if m.wants_source_features(0):  # domain adaptation: the same 12 rows as a 4-class source
        m.start_source(feats, torch.arange(12) % 4)
    m.start_epoch(0, feats, labels, torch.zeros(12, dtype=torch.long))
    return cfg, m, feats, labels


def _batch_of(feats, targets):
    x = feats.clone().requires_grad_(True)
    return Batch(
        x,
        torch.tensor(targets),
        torch.zeros(len(targets), dtype=torch.long),
        torch.arange(len(targets)),
    )


@pytest.fixture
def setup_method():
    """`setup_method(name, *overrides) -> (cfg, method, features, labels)`."""
    return _setup


@pytest.fixture
def batch_of():
    """`batch_of(features, targets) -> Batch` whose features require grad."""
    return _batch_of
