"""SpCL: self-paced labels, hybrid-memory rows and updates, unsupervised and adapting."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from run_copies import copied_after
from tiny_runs import QUIET_RUN
from unreid.checkpoint import load_checkpoint
from unreid.config import ConfigError, load_config
from unreid.engine import train
from unreid.losses.hybrid_nce import hybrid_nce, hybrid_nce_official
from unreid.methods import Batch, MethodContext, build_method
from unreid.methods import spcl as spcl_module
from unreid.pseudo_labels import PseudoLabels
from unreid.pseudo_labels.self_paced import reliable_clusters

D = 6
LABELS = PseudoLabels(np.array([0, 0, 0, 1, 1, 1, -1, 2, 2]))


def unit(n: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(n, D, generator=torch.Generator().manual_seed(seed)), dim=1)


def build(*overrides: str):
    cfg = load_config(
        None, ["method=spcl", "train.batch_size=8", "train.num_instances=2", *overrides]
    )
    ctx = MethodContext(
        D, cfg.train.num_instances, cfg.train.seed, cfg.cluster, adapting=bool(cfg.data.source)
    )
    return build_method(cfg.method, cfg.method_cfg, ctx)


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("spcl.eps_gap=0", "eps_gap"),
        ("spcl.momentum=1", "momentum"),
        ("spcl.cluster_on=fresh", "cluster_on"),
        ("spcl.loss=masked", "loss"),
        ("spcl.independence_keep=0", "independence_keep"),
        ("cluster.method=infomap", "cluster.method"),
        ("cluster.eps=0.99", "cluster.eps"),
        ("train.ground_truth=true", "cluster.method"),
    ],
)
def test_bad_settings_fail_at_load_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=key):
        load_config(None, ["method=spcl", override])


def test_self_paced_off_ignores_its_keys_and_allows_any_clusterer():
    cfg = load_config(None, ["method=spcl", "spcl.self_paced=false", "cluster.method=infomap"])
    assert {"spcl.eps_gap", "spcl.independence_keep"} <= set(cfg.ignored())


def test_unsupervised_rows_are_images_and_outliers_train_as_one_image_classes():
    m = build("spcl.self_paced=false")
    feats = unit(9, 0)
    assert torch.equal(m.clustering_features(0, feats, []), feats)
    m.start_epoch(0, feats, LABELS, torch.zeros(9, dtype=torch.long))
    assert torch.allclose(m.memory.bank, feats)
    train_labels = m.training_labels(LABELS)
    assert train_labels.tolist() == [0, 0, 0, 1, 1, 1, 3, 2, 2]  # the outlier is class 3
    x = unit(4, 1).requires_grad_(True)
    batch = Batch(x, torch.tensor([0, 3, 2, 0]), torch.zeros(4, dtype=torch.long),
                  torch.tensor([1, 6, 8, 1]))  # fmt: skip
    loss = m.losses(batch)["hybrid_nce"]
    assert torch.allclose(loss, hybrid_nce(x, batch.targets, m.memory.centroids(), 0.05))
    loss.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    before = m.memory.bank.clone()
    m.update_memories(Batch(x.detach(), batch.targets, batch.cameras, batch.indexes))
    changed = (m.memory.bank != before).any(dim=1).nonzero().flatten().tolist()
    assert changed == [1, 6, 8]  # each sample moved its own image row
    want = F.normalize(0.2 * before[6] + 0.8 * F.normalize(x[1].detach(), dim=0), dim=0)
    assert torch.allclose(m.memory.bank[6], want, atol=1e-6)
    # the next epoch clusters the stored features, not fresh ones
    assert torch.equal(m.clustering_features(1, unit(9, 5), []), m.memory.bank)
    extracted = build("spcl.self_paced=false", "spcl.cluster_on=extracted")
    extracted.clustering_features(0, feats, [])
    extracted.start_epoch(0, feats, LABELS, torch.zeros(9, dtype=torch.long))
    fresh = unit(9, 5)
    assert torch.equal(extracted.clustering_features(1, fresh, []), fresh)
    extracted.start_epoch(1, fresh, LABELS, torch.zeros(9, dtype=torch.long))
    assert torch.allclose(extracted.memory.bank, fresh)  # and they become the image rows


def test_adapting_rows_are_source_classes_then_target_images():
    m = build("spcl.self_paced=false", "data.source=market1501")
    src, src_ids, tgt = unit(5, 2), torch.tensor([0, 0, 1, 2, 2]), unit(9, 0)
    m.clustering_features(0, tgt, [])
    assert m.wants_source_features(0)
    m.start_source(src, src_ids)
    m.start_epoch(0, tgt, LABELS, torch.zeros(9, dtype=torch.long))
    assert not m.wants_source_features(1)  # carried: extracted once (SpCL)
    assert int(m.memory.num_source) == 3 and m.memory.bank.shape == (12, D)
    assert m.memory.row_classes.tolist() == [0, 1, 2, 3, 3, 3, 4, 4, 4, 6, 5, 5]
    # indexes: source samples 0..4, target images after them (5 + i)
    x = unit(4, 3)
    batch = Batch(x, torch.tensor([1, 2, 0, 3]), torch.zeros(4, dtype=torch.long),
                  torch.tensor([2, 4, 5 + 1, 5 + 6]), source_count=2)  # fmt: skip
    terms = m.losses(batch)
    centroids = m.memory.centroids()
    assert torch.allclose(terms["source_nce"], hybrid_nce(x[:2], torch.tensor([1, 2]), centroids))
    assert torch.allclose(terms["target_nce"], hybrid_nce(x[2:], torch.tensor([3, 6]), centroids))
    before = m.memory.bank.clone()
    m.update_memories(batch)
    changed = (m.memory.bank != before).any(dim=1).nonzero().flatten().tolist()
    assert changed == [1, 2, 3 + 1, 3 + 6]


def test_self_paced_labels_come_from_the_looser_and_tighter_clusterings(monkeypatch):
    tight = np.array([0, 0, -1, 1, 1, 1, -1, 2, 2])
    loose = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2])  # cluster 1 absorbs the outlier
    radii = []

    def fake(features, cfg, asked):
        radii.append(asked)
        return PseudoLabels(tight), PseudoLabels(loose)

    monkeypatch.setattr(spcl_module, "dbscan_at_radii", fake)
    m = build("cluster.eps=0.5", "spcl.eps_gap=0.05", "spcl.independence_keep=0.3")
    feats = unit(9, 0)
    m.clustering_features(0, feats, [])
    m.start_epoch(0, feats, LABELS, torch.zeros(9, dtype=torch.long))
    assert radii == [[0.45, 0.55]]
    want = reliable_clusters(LABELS.labels, tight, loose, keep_share=0.3)
    assert np.array_equal(m.training_labels(LABELS), want.labels)
    assert float(m.alpha) == want.alpha == 1.0  # cluster 1 grew at the looser radius: dropped
    assert np.array_equal(m.training_labels(LABELS)[[0, 1, 7, 8]], [0, 0, 1, 1])
    # alpha is fixed after the first epoch, even when the clustering would give another
    m.clustering_features(1, feats, [])
    m.start_epoch(1, feats, LABELS, torch.zeros(9, dtype=torch.long))
    assert float(m.alpha) == 1.0
    restored = build("cluster.eps=0.5", "spcl.eps_gap=0.05")
    restored.load_state_dict(m.state_dict())
    assert float(restored.alpha) == 1.0 and torch.equal(restored.memory.bank, m.memory.bank)


@pytest.mark.parametrize("rule", ["first_epoch", "every_epoch"])
def test_the_independence_threshold_is_kept_or_recomputed_by_its_rule(monkeypatch, rule):
    # epoch 1: cluster 1 grows at the looser radius (independence 3/4); epoch 2: it does
    # not, and cluster 0 does (2/3): a recomputed α follows, a fixed one stays
    tight = [np.array([0, 0, -1, 1, 1, 1, -1, 2, 2]), np.array([0, 0, -1, 1, 1, 1, -1, 2, 2])]
    loose = [np.array([0, 0, 0, 1, 1, 1, 1, 2, 2]), np.array([0, 0, 0, 1, 1, 1, -1, 2, 2])]
    calls = iter(range(2))

    def fake(features, cfg, asked):
        i = next(calls)
        return PseudoLabels(tight[i]), PseudoLabels(loose[i])

    monkeypatch.setattr(spcl_module, "dbscan_at_radii", fake)
    m = build("spcl.independence_keep=0.5", f"spcl.independence_rule={rule}")
    feats = unit(9, 0)
    alphas = []
    for epoch in range(2):
        m.clustering_features(epoch, feats, [])
        m.start_epoch(epoch, feats, LABELS, torch.zeros(9, dtype=torch.long))
        alphas.append(float(m.alpha))
    fresh = [
        reliable_clusters(LABELS.labels, t, lo, keep_share=0.5)
        for t, lo in zip(tight, loose, strict=True)
    ]
    assert fresh[0].alpha != fresh[1].alpha  # the two epochs' own thresholds differ
    if rule == "first_epoch":
        assert alphas == [fresh[0].alpha] * 2
        want = reliable_clusters(LABELS.labels, tight[1], loose[1], alpha=fresh[0].alpha)
    else:
        assert alphas == [fresh[0].alpha, fresh[1].alpha]
        want = fresh[1]
    assert np.array_equal(m.training_labels(LABELS), want.labels)


def test_an_unknown_independence_rule_is_refused_naming_the_key():
    with pytest.raises(ConfigError, match="independence_rule"):
        build("spcl.independence_rule=sometimes")


def test_adapting_run_resumes_exactly(tiny_synthetic, tiny_synthetic_b, tmp_path):
    common = [
        *QUIET_RUN, "train.iters=2", "train.threads=1", f"data.root={tiny_synthetic_b}",
        "data.height=64", "data.width=32",
        f"out_dir={tmp_path}", "method=spcl", "data.source=synthetic",
        f"data.source_root={tiny_synthetic}", "model.dsbn=true", "train.batch_size=16",
    ]  # fmt: skip
    with copied_after(1, tmp_path / "split"):  # as a kill after epoch 1 would leave it
        train(load_config("demo", [*common, "name=straight", "train.epochs=2"]), progress=False)
    again = load_config("demo", [*common, "name=split", "train.epochs=2"])
    train(again, resume=tmp_path / "split", progress=False)
    a = load_checkpoint(tmp_path / "straight" / "last.pth")
    b = load_checkpoint(tmp_path / "split" / "last.pth")
    for part in ("model", "method"):
        for key, value in a[part].items():
            assert torch.equal(value, b[part][key]) or (
                value.is_floating_point()
                and torch.isnan(value).all()
                and torch.isnan(b[part][key]).all()
            ), f"{part}.{key}"
    assert int(b["method"]["memory.num_source"]) > 0


def test_the_official_loss_option_computes_the_released_form_over_the_memorys_classes():
    m = build("spcl.self_paced=false", "spcl.loss=official")
    feats = unit(9, 0)
    m.clustering_features(0, feats, [])
    m.start_epoch(0, feats, LABELS, torch.zeros(9, dtype=torch.long))
    x = unit(4, 1)
    batch = Batch(x, torch.tensor([0, 3, 2, 0]), torch.zeros(4, dtype=torch.long),
                  torch.tensor([1, 6, 8, 1]))  # fmt: skip
    got = m.losses(batch)["hybrid_nce"]
    centroids = m.memory.centroids()
    assert torch.allclose(got, hybrid_nce_official(x, batch.targets, centroids, 0.05))
    assert not torch.allclose(got, hybrid_nce(x, batch.targets, centroids, 0.05), atol=0, rtol=0)
