"""ICE: its config, which terms run, the mean teacher (EMA, views, state) and a tiny run."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tiny_runs import QUIET_RUN
from unreid.checkpoint import load_checkpoint, load_state
from unreid.config import ConfigError, load_config
from unreid.engine import train
from unreid.engine.setup import training_views
from unreid.inference import read_weights
from unreid.losses import cluster_nce
from unreid.losses.ice import ice_hard_instance_nce, ice_proxy_nce, ice_soft_consistency
from unreid.methods import Batch, MethodContext, build_method
from unreid.methods.ice import ICE, TEACHER_STRONG, TEACHER_WEAK
from unreid.pseudo_labels import PseudoLabels

D = 8
LABELS = [0, 0, 0, 1, 1, 1, 2, 2, 2, -1, 1, 0]
CAMERAS = torch.tensor([0, 1, 2, 0, 0, 1, 1, 2, 2, 0, 2, 0])
IDX = [0, 1, 3, 4, 6, 7]


def build(*overrides: str) -> tuple[ICE, torch.Tensor]:
    cfg = load_config(
        None, ["method=ice", "train.num_instances=2", "train.batch_size=6", *overrides]
    )
    feats = F.normalize(torch.randn(12, D, generator=torch.Generator().manual_seed(0)), dim=1)
    m = build_method(cfg.method, cfg.method_cfg, MethodContext(D, 2, cfg.train.seed))
    m.start_epoch(0, feats, PseudoLabels(torch.tensor(LABELS).numpy()), CAMERAS)
    return m, feats


def batch(feats: torch.Tensor, idx=IDX, **extras: torch.Tensor) -> Batch:
    return Batch(
        feats[idx].clone().requires_grad_(True),
        torch.tensor([LABELS[i] for i in idx]),
        CAMERAS[idx],
        torch.tensor(idx),
        extras=dict(extras),
    )


def teacher_feats(seed: int, n: int = len(IDX)) -> torch.Tensor:
    return F.normalize(torch.randn(n, D, generator=torch.Generator().manual_seed(seed)), dim=1)


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("ice.form=released", "ice.form"),
        ("ice.proxy_temperature=0", "ice.proxy_temperature"),
        ("ice.instance_weight=-1", "ice.instance_weight"),
        ("ice.ema_momentum=1.5", "ice.ema_momentum"),
        ("ice.hard_negatives=0", "ice.hard_negatives"),
        ("ice.cluster_label_smoothing=2", "ice.cluster_label_smoothing"),
        ("ice.teacher_bn_group_size=4", "ice.teacher_bn_group_size"),  # batch of 6
        ("data.decoded_cache=true", "data.decoded_cache"),
    ],
)
def test_bad_settings_fail_at_load_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        build(override)


def test_all_terms_off_is_refused():
    off = ["ice.proxy_weight=0", "ice.instance_weight=0", "ice.consistency_weight=0"]
    with pytest.raises(ConfigError, match="every term is off"):
        build(*off)
    m, _ = build(*off, "ice.form=code")  # the code's cluster term alone is a term
    assert m.cfg.terms == ("cluster_ce",)


def test_terms_views_and_ignored_keys_follow_the_settings():
    cfg = build()[0].cfg
    assert cfg.terms == ("proxy_nce", "hard_instance", "soft_instance")
    assert build()[0].views == ("strong", "strong", "weak")
    assert build("ice.consistency_weight=0")[0].views == ("strong", "strong")
    assert build("ice.instance_weight=0", "ice.consistency_weight=0")[0].views == ("strong",)
    assert build("ice.form=code")[0].cfg.terms == (
        "proxy_nce",
        "cluster_ce",
        "hard_instance",
        "soft_instance",
    )
    assert set(cfg.ignored()) == {
        "cluster_weight",
        "cluster_temperature",
        "cluster_label_smoothing",
    }
    assert "proxy_momentum" in build("ice.form=code")[0].cfg.ignored()


def test_paper_form_losses_are_the_weighted_loss_functions():
    m, feats = build()
    t, w = teacher_feats(1), teacher_feats(2)
    b = batch(feats, **{TEACHER_STRONG: t, TEACHER_WEAK: w})
    got = m.losses(b)
    x, y, p = b.features, b.targets, m.proxies
    assert set(got) == {"proxy_nce", "hard_instance", "soft_instance"}
    proxy = ice_proxy_nce(x, y, b.cameras, p.bank, p.proxy_cluster, 0.07, 50, "mean")
    torch.testing.assert_close(got["proxy_nce"], 0.5 * proxy)
    torch.testing.assert_close(got["hard_instance"], ice_hard_instance_nce(x, t, y, 0.1))
    torch.testing.assert_close(got["soft_instance"], 10 * ice_soft_consistency(x, t, w, 0.4))


def test_code_form_sums_cameras_adds_the_cluster_term_and_keeps_proxies_still():
    m, feats = build("ice.form=code", "ice.instance_weight=0", "ice.consistency_weight=0")
    b = batch(feats)
    got = m.losses(b)
    x, y, p = b.features, b.targets, m.proxies
    assert set(got) == {"proxy_nce", "cluster_ce"}
    proxy = ice_proxy_nce(x, y, b.cameras, p.bank, p.proxy_cluster, 0.07, 50, "per_camera_sum")
    torch.testing.assert_close(got["proxy_nce"], 0.5 * proxy)
    centroids = PseudoLabels(torch.tensor(LABELS).numpy()).centroids(feats)
    torch.testing.assert_close(got["cluster_ce"], cluster_nce(x, y, centroids, 0.5, 0.1))
    before = (p.bank.clone(), m.centroids.bank.clone())
    m.update_memories(Batch(x.detach(), y, b.cameras, b.indexes))
    assert torch.equal(p.bank, before[0]) and torch.equal(m.centroids.bank, before[1])


def test_paper_form_moves_each_samples_own_proxy():
    m, feats = build()
    b = batch(feats)
    before = m.proxies.bank.clone()
    m.update_memories(Batch(b.features.detach(), b.targets, b.cameras, b.indexes))
    moved = (m.proxies.bank != before).any(dim=1).nonzero().flatten().tolist()
    assert moved == sorted(m.proxies.proxy_of(b.targets, b.cameras).unique().tolist())


class Tiny(nn.Module):
    """Images (B, 3, 4, 2) -> unit features (B, D), with a BatchNorm to keep statistics."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, D, 3, padding=1)
        self.bn = nn.BatchNorm1d(D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.bn(self.conv(x).mean(dim=(2, 3))), dim=1)


def bound(*overrides: str) -> tuple[ICE, Tiny, torch.Tensor]:
    torch.manual_seed(0)
    m, feats = build(*overrides)
    student = Tiny()
    m.bind_model(student)
    return m, student, feats


def test_teacher_is_a_frozen_copy_outside_the_optimizer_and_the_student_is_not_saved():
    m, student, _ = bound()
    assert m.teacher is not None and m.teacher is not student
    assert all(not p.requires_grad for p in m.teacher.parameters())
    assert [p.requires_grad for p in student.parameters()] == [True] * 4
    trainable = [p for p in [*student.parameters(), *m.parameters()] if p.requires_grad]
    assert len(trainable) == 4  # what build_run hands Adam: the student's only
    keys = set(m.state_dict())
    assert {"teacher.conv.weight", "teacher.bn.running_mean"} <= keys
    assert not any(k.startswith("_student") for k in keys)


def test_ema_update_is_the_formula_on_parameters_and_leaves_buffers():
    m, student, feats = bound("ice.ema_momentum=0.9")
    with torch.no_grad():
        for p in student.parameters():
            p.add_(torch.randn_like(p))
        student.bn.running_mean.fill_(5.0)
    old = {k: v.clone() for k, v in m.teacher.state_dict().items()}
    new = dict(student.named_parameters())
    b = batch(feats)
    m.update_memories(Batch(b.features.detach(), b.targets, b.cameras, b.indexes))
    for name, p in m.teacher.named_parameters():
        torch.testing.assert_close(p, 0.9 * old[name] + 0.1 * new[name])
    assert torch.equal(m.teacher.bn.running_mean, old["bn.running_mean"])


def test_teacher_forward_of_the_views_feeds_the_instance_terms():
    m, student, feats = bound()
    views = (torch.randn(6, 3, 4, 2), torch.randn(6, 3, 4, 2))
    b = batch(feats)
    b.views = views
    m.train()
    got = m.losses(b)
    with torch.no_grad():
        t, w = m.teacher(views[0]), m.teacher(views[1])
    assert set(got) == {"proxy_nce", "hard_instance", "soft_instance"}
    torch.testing.assert_close(
        got["hard_instance"], ice_hard_instance_nce(b.features, t, b.targets)
    )
    torch.testing.assert_close(got["soft_instance"], 10 * ice_soft_consistency(b.features, t, w))
    b.views = views[:1]
    b.extras.clear()
    with pytest.raises(ValueError, match="needs the batch's extra views"):
        m.losses(b)


def test_shuffle_bn_normalises_groups_of_the_shuffled_batch():
    m, _, _ = bound("ice.teacher_bn_group_size=3")
    m.train()
    images = torch.randn(6, 3, 4, 2)
    torch.manual_seed(5)
    got = m.teacher_forward(images)
    torch.manual_seed(5)
    order = torch.randperm(6)
    with torch.no_grad():
        parts = [m.teacher(images[order[i : i + 3]]) for i in (0, 3)]
    want = torch.cat(parts)[torch.argsort(order)]
    torch.testing.assert_close(got, want)


def test_teacher_and_memories_round_trip_through_the_state_dict():
    m, student, feats = bound()
    b = batch(feats)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
    m.update_memories(Batch(b.features.detach(), b.targets, b.cameras, b.indexes))
    state = {k: v.clone() for k, v in m.state_dict().items()}
    fresh, _, _ = bound()
    load_state(fresh, state, "test")
    for k, v in state.items():
        assert torch.equal(fresh.state_dict()[k], v), k


def test_views_are_refused_under_torchrun_and_with_the_decoded_cache():
    m, _ = build()
    cfg = load_config(None, ["method=ice"])
    images = SimpleNamespace(images=object())  # not an ImageDataset: decoded uint8 tensors
    with pytest.raises(ConfigError, match="torchrun"):
        training_views(m, images, cfg, SimpleNamespace(distributed=True))
    with pytest.raises(ConfigError, match="data.decoded_cache=true"):
        training_views(m, images, cfg, SimpleNamespace(distributed=False))


def test_a_tiny_run_trains_every_term_and_moves_the_teacher(tiny_synthetic, tmp_path, monkeypatch):
    """... and, as ICE's code, clusters and evaluates the teacher and keeps its weights for
    inference (`ice.extract_with=teacher`, the default but in ice/demo)."""
    import unreid.engine.loop as loop

    initial: dict[str, torch.Tensor] = {}
    real_bind, real_extract = ICE.bind_model, loop.Extractor.__call__
    bound: list[ICE] = []
    extracted: list[tuple[str, bool]] = []  # (what, was it the teacher)

    def spy_bind(self, model):
        real_bind(self, model)
        bound.append(self)
        initial.update({k: v.clone() for k, v in self.teacher.named_parameters()})

    def spy_extract(self, model, samples, desc):
        extracted.append((desc, model is bound[0].teacher))
        return real_extract(self, model, samples, desc)

    monkeypatch.setattr(ICE, "bind_model", spy_bind)
    monkeypatch.setattr(loop.Extractor, "__call__", spy_extract)
    cfg = load_config(
        "ice/demo",
        [*QUIET_RUN, "train.iters=2", "train.epochs=1", "train.threads=1",
         f"data.root={tiny_synthetic}", f"out_dir={tmp_path}", "ice.extract_with=teacher"],
    )  # fmt: skip
    summary = train(cfg, progress=False)
    run = Path(summary["run_dir"])
    record = json.loads((run / "log.jsonl").read_text().splitlines()[-1])
    losses = record["losses"]
    assert set(losses) == {"proxy_nce", "hard_instance", "soft_instance"}
    assert all(v == v and abs(v) < float("inf") for v in losses.values())
    ckpt = load_checkpoint(run / "last.pth")
    teacher = {
        k[len("teacher.") :]: v for k, v in ckpt["method"].items() if k.startswith("teacher.")
    }
    moved = [k for k in initial if not torch.equal(teacher[k], initial[k])]
    assert moved, "the EMA never moved the teacher"
    assert any(not torch.equal(teacher[k], ckpt["model"][k]) for k in moved)  # it lags
    # the training set's features (clustering, proxies) and the evaluation: the teacher's
    assert [what for what, _ in extracted][:1] == ["extract 1"] and len(extracted) >= 2
    assert all(was_teacher for _, was_teacher in extracted), extracted
    # inference reads the teacher (its BN statistics included) from the training checkpoint
    inference, _, _ = read_weights(run / "last.pth")
    assert inference.keys() == ckpt["model"].keys()
    assert all(torch.equal(inference[k], teacher[k]) for k in inference)


def test_extract_with_picks_the_teacher_or_the_student():
    model = nn.Sequential(nn.Linear(3, 3))
    for choice, want in (("teacher", "teacher"), ("student", "model")):
        m, _ = build(f"ice.extract_with={choice}")
        m.bind_model(model)
        assert m.extraction_model(model) is {"teacher": m.teacher, "model": model}[want]
    alone, _ = build("ice.instance_weight=0", "ice.consistency_weight=0")
    alone.bind_model(model)  # no teacher term, no teacher: the model is extracted
    assert alone.teacher is None and alone.extraction_model(model) is model
    with pytest.raises(ConfigError, match="extract_with"):
        load_config(None, ["method=ice", "ice.extract_with=ema"])
