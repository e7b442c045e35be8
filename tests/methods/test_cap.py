"""CAP + Cluster Contrast: which terms run when, with which memories, and their updates."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from unreid.config import load_config
from unreid.losses import cluster_nce
from unreid.losses.camera_proxy_nce import inter_camera_nce, intra_camera_nce
from unreid.methods import Batch, MethodContext, build_method
from unreid.pseudo_labels import PseudoLabels

D = 8
LABELS = [0, 0, 0, 1, 1, 1, 2, 2, 2, -1, 1, 0]
CAMERAS = torch.tensor([0, 1, 2, 0, 0, 1, 1, 2, 2, 0, 2, 0])


def setup(*overrides: str, epoch: int = 0):
    cfg = load_config(
        None, ["method=cap", "train.num_instances=2", "train.batch_size=4", *overrides]
    )
    feats = F.normalize(torch.randn(12, D, generator=torch.Generator().manual_seed(0)), dim=1)
    labels = PseudoLabels(torch.tensor(LABELS).numpy())
    m = build_method(
        cfg.method, cfg.method_cfg, MethodContext(D, cfg.train.num_instances, cfg.train.seed)
    )
    m.start_epoch(epoch, feats, labels, CAMERAS)
    return cfg, m, feats, labels


def batch(feats, idx):
    return Batch(
        feats[idx].clone().requires_grad_(True),
        torch.tensor([LABELS[i] for i in idx]),
        CAMERAS[idx],
        torch.tensor(idx),
    )


def test_inter_camera_term_starts_at_its_epoch_and_terms_add_up():
    idx = [0, 1, 3, 5, 6, 7]
    _, early, feats, labels = setup(epoch=4)
    assert set(early.losses(batch(feats, idx))) == {"cluster_nce", "intra_camera"}
    cfg, m, feats, labels = setup(epoch=5)
    b = batch(feats, idx)
    got = m.losses(b)
    assert set(got) == {"cluster_nce", "intra_camera", "inter_camera"}
    p = m.proxies
    rows = p.proxy_of(b.targets, b.cameras)
    torch.testing.assert_close(
        got["cluster_nce"], cluster_nce(b.features, b.targets, labels.centroids(feats), 0.05)
    )
    torch.testing.assert_close(
        got["intra_camera"],
        intra_camera_nce(b.features, rows, b.cameras, p.bank, p.proxy_camera, 0.07),
    )
    inter = inter_camera_nce(
        b.features, b.targets, b.cameras, p.bank, p.proxy_cluster, p.proxy_camera, 0.07, 50
    )
    torch.testing.assert_close(got["inter_camera"], 0.5 * inter)


def test_cluster_weight_zero_is_cap_alone():
    _, m, feats, _ = setup("cap.cluster_weight=0", epoch=9)
    assert set(m.losses(batch(feats, [0, 1, 3]))) == {"intra_camera", "inter_camera"}


def test_update_moves_cluster_rows_and_own_proxies():
    _, m, feats, _ = setup()
    b = batch(feats, [0, 1, 3])
    cluster_before, proxy_before = m.memory.bank.clone(), m.proxies.bank.clone()
    m.update_memories(Batch(b.features.detach(), b.targets, b.cameras, b.indexes))
    moved = m.proxies.proxy_of(b.targets, b.cameras).unique()
    changed = (m.proxies.bank != proxy_before).any(dim=1).nonzero().flatten()
    assert changed.tolist() == sorted(moved.tolist())
    assert not torch.equal(m.memory.bank, cluster_before)


def test_bad_settings_are_refused():
    for bad in ("cap.temperature=0", "cap.inter_positives=own", "cap.hard_negatives=0"):
        with pytest.raises(ValueError, match="cap"):
            setup(bad)
