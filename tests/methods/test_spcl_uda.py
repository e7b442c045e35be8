"""SpCL + Cluster Contrast: the unified memory's rows for source classes and target clusters."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from unreid.config import ConfigError, load_config
from unreid.losses import cluster_nce
from unreid.methods import Batch, MethodContext, build_method
from unreid.pseudo_labels import PseudoLabels

D = 6
SOURCE_IDS = torch.tensor([0, 0, 1, 1, 1, 2, 2])
TARGET = PseudoLabels(torch.tensor([1, 1, -1, 0, 0, 1]).numpy())


def unit(n: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(n, D, generator=torch.Generator().manual_seed(seed)), dim=1)


def build(*overrides: str):
    cfg = load_config(
        None,
        [
            "method=spcl_uda",
            "data.source=market1501",
            "train.batch_size=8",
            "train.num_instances=2",
            *overrides,
        ],
    )
    return build_method(
        cfg.method, cfg.method_cfg, MethodContext(D, cfg.train.num_instances, cfg.train.seed)
    )


def test_rows_are_source_classes_then_target_clusters():
    m = build()
    src, tgt = unit(7, 0), unit(6, 1)
    assert m.wants_source_features(0)
    m.start_source(src, SOURCE_IDS)
    m.start_epoch(0, tgt, TARGET, torch.zeros(6, dtype=torch.long))
    assert int(m.num_source) == 3 and m.memory.bank.shape == (5, D)
    for c in range(3):
        torch.testing.assert_close(
            m.memory.bank[c], F.normalize(src[SOURCE_IDS.eq(c)].sum(0), dim=0)
        )
    for c in range(2):
        members = torch.tensor(TARGET.labels) == c
        torch.testing.assert_close(m.memory.bank[3 + c], F.normalize(tgt[members].sum(0), dim=0))
    # a mixed batch: two source rows (class ids), then three target rows (cluster ids)
    x = unit(5, 2).requires_grad_(True)
    b = Batch(
        x,
        torch.tensor([2, 0, 1, 0, 1]),
        torch.zeros(5, dtype=torch.long),
        torch.arange(5),
        source_count=2,
    )
    rows = m.memory_rows(b)
    assert rows.tolist() == [2, 0, 4, 3, 4]
    torch.testing.assert_close(m.losses(b)["cluster_nce"], cluster_nce(x, rows, m.memory.bank))
    before = m.memory.bank.clone()
    m.update_memories(Batch(x.detach(), b.targets, b.cameras, b.indexes, source_count=2))
    changed = (m.memory.bank != before).any(dim=1).nonzero().flatten().tolist()
    assert changed == [0, 2, 3, 4]  # source classes 0, 2 and target clusters 0, 1; class 1 kept


def test_source_rows_are_carried_across_epochs_unless_refreshed():
    m = build()
    m.start_source(unit(7, 0), SOURCE_IDS)
    m.start_epoch(0, unit(6, 1), TARGET, torch.zeros(6, dtype=torch.long))
    x = unit(2, 3)
    m.update_memories(
        Batch(
            x,
            torch.tensor([1, 0]),
            torch.zeros(2, dtype=torch.long),
            torch.arange(2),
            source_count=2,
        )
    )
    moved = m.memory.bank[:3].clone()
    assert not m.wants_source_features(1)
    new_target = PseudoLabels(torch.tensor([0, 1, 2, 0, 1, 2]).numpy())
    m.start_epoch(1, unit(6, 4), new_target, torch.zeros(6, dtype=torch.long))
    torch.testing.assert_close(m.memory.bank[:3], moved)
    assert m.memory.bank.shape == (6, D)
    assert build("spcl_uda.source_centroids=refresh").wants_source_features(5)


def test_state_dict_restores_the_split():
    m = build()
    m.start_source(unit(7, 0), SOURCE_IDS)
    m.start_epoch(0, unit(6, 1), TARGET, torch.zeros(6, dtype=torch.long))
    fresh = build()
    fresh.load_state_dict(m.state_dict())
    assert int(fresh.num_source) == 3 and not fresh.wants_source_features(1)
    torch.testing.assert_close(fresh.memory.bank, m.memory.bank)


def test_configuration_errors():
    with pytest.raises(ConfigError, match="data.source"):
        load_config(None, ["method=spcl_uda"])
    with pytest.raises(ConfigError, match="data.source"):
        load_config(None, ["data.source=market1501"])  # cluster_contrast has no source
    with pytest.raises(ConfigError, match="model.dsbn"):
        load_config(None, ["model.dsbn=true"])
    with pytest.raises(ConfigError, match="half source"):
        load_config(
            None,
            [
                "method=spcl_uda",
                "data.source=msmt17",
                "train.batch_size=48",
                "train.num_instances=16",
            ],
        )
    with pytest.raises(ValueError, match="source_centroids"):
        build("spcl_uda.source_centroids=sometimes")
    m = build()
    with pytest.raises(RuntimeError, match="start_source"):
        m.start_epoch(0, unit(6, 1), TARGET, torch.zeros(6, dtype=torch.long))
    with pytest.raises(ValueError, match="contiguous"):
        m.start_source(unit(3, 0), torch.tensor([0, 2, 2]))
