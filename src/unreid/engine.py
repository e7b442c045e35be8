"""The one training loop: extract → Jaccard → cluster → memories → train → evaluate.

`train()` reads top to bottom as the algorithm does. Everything a method
needs to differ in (memories, losses, updates) goes through the `Method`
plug-in; everything about placement, order of steps, logging and checkpoints
stays here.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from unreid.checkpoint import load_checkpoint, load_matching, save_checkpoint
from unreid.config import Config, dump_config
from unreid.data.datasets import load_dataset
from unreid.data.domain_batches import MixedDomainBatches, single_domain
from unreid.data.image_dataset import ImageDataset
from unreid.data.samplers import PKSampler
from unreid.data.samples import Sample
from unreid.data.splits import holdout_split
from unreid.data.transforms import train_transform
from unreid.evaluation import RankingMetrics, evaluate_features
from unreid.features import extract_features
from unreid.methods import Batch, Method, build_method
from unreid.models.dsbn import ALL_ROWS, source_rows
from unreid.models.reid_model import ReidModel, build_model
from unreid.pseudo_labels import PseudoLabels, cluster_features
from unreid.pseudo_labels.infomap_clustering import infomap_labels

log = logging.getLogger("unreid")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"train.device={name!r} but CUDA is not available on this machine")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def evaluate_model(
    model: torch.nn.Module,
    query: list[Sample],
    gallery: list[Sample],
    cfg: Config,
    device: torch.device,
    progress: bool = True,
) -> RankingMetrics:
    feats = extract_features(
        model,
        query + gallery,
        cfg.data.height,
        cfg.data.width,
        cfg.eval.batch_size,
        cfg.data.workers,
        device,
        desc="evaluate",
        progress=progress,
    )
    return evaluate_samples(
        feats[: len(query)], feats[len(query) :], query, gallery, rerank=cfg.eval.rerank
    )


def evaluate_samples(
    qf: torch.Tensor | np.ndarray,
    gf: torch.Tensor | np.ndarray,
    query: list[Sample],
    gallery: list[Sample],
    rerank: bool = False,
) -> RankingMetrics:
    return evaluate_features(
        qf,
        gf,
        np.array([s.pid for s in query]),
        np.array([s.pid for s in gallery]),
        np.array([s.camera for s in query]),
        np.array([s.camera for s in gallery]),
        rerank=rerank,
    )


def make_pseudo_labels(cfg: Config, features: torch.Tensor, samples: list[Sample]) -> PseudoLabels:
    if cfg.train.ground_truth:
        if any(s.pid is None for s in samples):
            raise ValueError("train.ground_truth=true needs identity labels on the training set")
        _, ids = np.unique([s.pid for s in samples], return_inverse=True)
        return PseudoLabels(ids.astype(np.int64))
    c = cfg.cluster
    if c.method == "infomap":
        return PseudoLabels(
            infomap_labels(
                features,
                k=c.infomap_k,
                min_sim=c.infomap_min_sim,
                min_cluster_size=c.infomap_min_size,
                seed=cfg.train.seed,
            )
        )
    return cluster_features(
        features,
        k1=c.k1,
        k2=c.k2,
        eps=c.eps,
        min_samples=c.min_samples,
        jaccard_variant=c.jaccard_variant,
        knn=c.knn,
        jaccard_impl=c.jaccard_impl,
        ivf_nlist=c.ivf_nlist or None,
        ivf_nprobe=c.ivf_nprobe,
    )


def train_one_epoch(
    model: ReidModel,
    method: Method,
    steps: Iterable[tuple[torch.Tensor, torch.Tensor, int]],
    num_steps: int,
    labels: torch.Tensor,
    cameras: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    desc: str,
    progress: bool,
) -> dict[str, float]:
    """One pass over `steps` of (images, indexes, source_count); labels/cameras by index."""
    model.train()
    method.train()
    totals: dict[str, float] = {}
    bar = tqdm(steps, total=num_steps, desc=desc, leave=False, disable=not progress)
    for images, indexes, source_count in bar:
        with source_rows(model, source_count):  # domain-specific BN, if any
            features = model(images.to(device, non_blocking=True))
        batch = Batch(
            features=features,
            targets=labels[indexes].to(device),
            cameras=cameras[indexes].to(device),
            indexes=indexes.to(device),
            source_count=source_count,
        )
        losses = method.losses(batch)
        loss = sum(losses.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        batch.features = batch.features.detach()
        method.update_memories(batch)  # explicit, after the step: the loss saw the old bank
        for name, value in losses.items():
            totals[name] = totals.get(name, 0.0) + value.item()
        bar.set_postfix(loss=f"{loss.item():.3f}")
    return {name: total / num_steps for name, total in totals.items()}


def pk_loader(
    samples: ImageDataset,
    labels: Any,
    cameras: torch.Tensor,
    batch_size: int,
    cfg: Config,
    epoch: int,
    device: torch.device,
    stream: int = 0,
) -> DataLoader:
    """`cfg.train.iters` P×K batches over `samples` by `labels` (-1 never drawn)."""
    sampler = PKSampler(
        labels,
        cameras.tolist(),
        cfg.train.num_instances,
        batch_size,
        cfg.train.iters,
        seed=cfg.train.seed + stream,
    )
    sampler.set_epoch(epoch)
    return DataLoader(
        samples,
        batch_sampler=sampler,
        num_workers=cfg.data.workers,
        pin_memory=device.type == "cuda",
    )


@dataclass
class SourceDomain:
    """The labelled source set of domain adaptation, with its class ids 0..C_s-1."""

    samples: list[Sample]
    labels: torch.Tensor  # (N_s,) long
    cameras: torch.Tensor  # (N_s,) long
    images: ImageDataset


def load_source(cfg: Config, transform: Any) -> SourceDomain:
    root = cfg.data.source_root or cfg.data.root
    source = load_dataset(cfg.data.source, root)
    if not source.train_is_labelled:
        raise ValueError(
            f"data.source={cfg.data.source!r} ({root}): the source domain needs identity labels "
            "on every training image"
        )
    _, ids = np.unique([s.pid for s in source.train], return_inverse=True)
    log.info("source domain: %s", source.summary())
    return SourceDomain(
        source.train,
        torch.from_numpy(ids.astype(np.int64)),
        torch.tensor([s.camera for s in source.train], dtype=torch.long),
        ImageDataset(source.train, transform, cfg.data.cache_images),
    )


def extract_source(
    model: ReidModel,
    source: SourceDomain,
    cfg: Config,
    device: torch.device,
    desc: str,
    progress: bool,
) -> torch.Tensor:
    with source_rows(model, ALL_ROWS):  # the source statistics, under DSBN
        return extract_features(
            model,
            source.samples,
            cfg.data.height,
            cfg.data.width,
            cfg.train.extract_batch_size,
            cfg.data.workers,
            device,
            desc=desc,
            progress=progress,
        )


def epoch_batches(
    train_set: ImageDataset,
    labels: PseudoLabels,
    cameras: torch.Tensor,
    source: SourceDomain | None,
    cfg: Config,
    epoch: int,
    device: torch.device,
) -> tuple[Iterable, torch.Tensor, torch.Tensor]:
    """This epoch's steps, and the label and camera of every index they yield.

    Alone, P×K batches over the clustered target images. Adapting domains, each
    step is a source P×K half (true ids) on a target half, indexed source first.
    """
    half = cfg.train.batch_size // 2 if source else cfg.train.batch_size
    target = pk_loader(train_set, labels.labels, cameras, half, cfg, epoch, device)
    label_of = torch.tensor(labels.labels, dtype=torch.long)
    if source is None:
        return single_domain(target), label_of, cameras
    source_loader = pk_loader(
        source.images, source.labels.numpy(), source.cameras, half, cfg, epoch, device, stream=1
    )
    return (
        MixedDomainBatches(source_loader, target, len(source.samples)),
        torch.cat([source.labels, label_of]),
        torch.cat([source.cameras, cameras]),
    )


def check_cameras(method: Method, samples: list[Sample], dataset: str) -> None:
    if not method.requires_cameras:
        return
    cams = sorted({s.camera for s in samples})
    if len(cams) < 2 or cams[0] < 0:
        raise ValueError(
            f"method={method.name!r} needs camera ids: it splits clusters by camera, but the "
            f"training set of {dataset!r} has camera ids {cams[:10]} (at least two distinct "
            "ids >= 0 are needed). Use a loader that reads cameras, or another method."
        )


@dataclass
class RunState:
    epoch: int = 0  # next epoch to run
    best_map: float = -1.0
    best_epoch: int = -1


class RunLog:
    """Per-epoch JSON lines beside the checkpoints, for plots and scripts."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, record: dict[str, Any]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")


def _fmt_metrics(prefix: str, m: RankingMetrics | None) -> str:
    if m is None:
        return ""
    return f" | {prefix}mAP {100 * m.mAP:.1f} R1 {100 * m.rank1:.1f}"


def _metrics_record(m: RankingMetrics) -> dict[str, float]:
    return {"mAP": m.mAP, "rank1": m.rank1, "rank5": m.rank5, "rank10": m.rank10}


def train(cfg: Config, resume: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Train `cfg.method` unsupervised on `cfg.data`; returns a summary of the run."""
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)
    seed_everything(cfg.train.seed)
    device = resolve_device(cfg.train.device)
    run_dir = Path(cfg.out_dir) / cfg.name
    run_dir.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, run_dir / "config.yaml")
    run_log = RunLog(run_dir / "log.jsonl")
    if not resume and run_log.path.exists():
        log.warning("%s already holds a run: starting afresh over it", run_dir)
        run_log.path.unlink()
        (run_dir / "best.pth").unlink(missing_ok=True)

    dataset = load_dataset(cfg.data.dataset, cfg.data.root)
    log.info("%s", dataset.summary())
    train_samples, val_query, val_gallery = holdout_split(
        dataset.train, cfg.data.holdout_ids, cfg.train.seed
    )
    has_val, has_test = bool(val_query), dataset.has_test_split
    true_ids = [s.pid for s in train_samples] if dataset.train_is_labelled else None
    cameras = torch.tensor([s.camera for s in train_samples])
    transform = train_transform(cfg.data.height, cfg.data.width)
    source = load_source(cfg, transform) if cfg.data.source else None  # domain adaptation

    model = build_model(cfg.model).to(device)
    method = build_method(cfg, model.feature_dim).to(device)
    check_cameras(method, train_samples, cfg.data.dataset)
    params = [p for p in [*model.parameters(), *method.parameters()] if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, cfg.train.step_size, cfg.train.gamma)
    state = RunState()
    if resume:
        ckpt = load_checkpoint(resume)
        load_matching(model, ckpt["model"], resume)
        load_matching(method, ckpt["method"], resume)
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        state = RunState(**ckpt["state"])
        log.info("resumed from %s at epoch %d", resume, state.epoch)

    def evaluate(split: str) -> RankingMetrics:
        q, g = (val_query, val_gallery) if split == "val" else (dataset.query, dataset.gallery)
        return evaluate_model(model, q, g, cfg, device, progress)

    if state.epoch == 0 and cfg.eval.at_start and has_test:
        m = evaluate("test")
        log.info("epoch 0 (untrained)%s", _fmt_metrics("test ", m))
        run_log.write({"epoch": 0, "test": _metrics_record(m)})

    train_set = ImageDataset(train_samples, transform, cfg.data.cache_images)
    test_m = val_m = None
    for epoch in range(state.epoch, cfg.train.epochs):
        started = time.time()
        # Reseed per epoch: a resumed run replays exactly what an uninterrupted one does,
        # whatever evaluation or other RNG consumers ran before.
        seed_everything(cfg.train.seed * 1000 + epoch)
        # 1. features of every training image, in dataset order
        features = extract_features(
            model,
            train_samples,
            cfg.data.height,
            cfg.data.width,
            cfg.train.extract_batch_size,
            cfg.data.workers,
            device,
            desc=f"extract {epoch + 1}",
            progress=progress,
        )
        # 2. pseudo labels: k-reciprocal Jaccard + DBSCAN (-1 = outlier, left out this epoch),
        #    on the method's view of the features (raw, or refined as GCL's cluster refinement)
        to_cluster = method.clustering_features(epoch, features, train_samples)
        labels = make_pseudo_labels(cfg, to_cluster, train_samples)
        del to_cluster
        if labels.num_clusters == 0:
            raise RuntimeError(
                f"epoch {epoch + 1}: clustering found no clusters among {len(features)} images "
                f"(cluster.eps={cfg.cluster.eps}, min_samples={cfg.cluster.min_samples}); "
                "raise eps or check the features"
            )
        # 3. memories from this epoch's clusters (and, adapting domains, the source classes)
        if source is not None and method.wants_source_features(epoch):
            feats = extract_source(
                model, source, cfg, device, f"extract source {epoch + 1}", progress
            )
            method.start_source(feats.to(device), source.labels.to(device))
            del feats
        method.start_epoch(epoch, features.to(device), labels, cameras)
        # 4. P×K batches over the clustered images, a fixed number per epoch
        #    (adapting domains: half source with true ids, half target)
        steps, label_of, camera_of = epoch_batches(
            train_set, labels, cameras, source, cfg, epoch, device
        )
        losses = train_one_epoch(
            model,
            method,
            steps,
            cfg.train.iters,
            label_of,
            camera_of,
            optimizer,
            device,
            f"train {epoch + 1}/{cfg.train.epochs}",
            progress,
        )
        scheduler.step()
        # 5. evaluation and checkpoints
        last = epoch + 1 == cfg.train.epochs
        test_m = val_m = None
        if (epoch + 1) % cfg.eval.every == 0 or last:
            test_m = evaluate("test") if has_test else None
            val_m = evaluate("val") if has_val else None
        stats = labels.stats()
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "clusters": labels.num_clusters,
            "outliers": labels.num_outliers,
            "cluster_sizes": stats,
            "losses": losses,
            "lr": scheduler.get_last_lr()[0],
            "seconds": round(time.time() - started, 2),
        }
        if true_ids is not None:
            record["pseudo_label_quality"] = labels.quality(true_ids)
        for split, m in (("test", test_m), ("val", val_m)):
            if m is not None:
                record[split] = _metrics_record(m)
        selector = {"val": val_m, "test": test_m}.get(cfg.eval.select_best_on)
        improved = selector is not None and selector.mAP > state.best_map
        if improved:
            state.best_map, state.best_epoch = selector.mAP, epoch + 1
        state.epoch = epoch + 1
        ckpt = {
            "model": model.state_dict(),
            "method": method.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": torch.get_rng_state(),
            "state": vars(state).copy(),
            "config": cfg.to_dict(),
        }
        save_checkpoint(run_dir / "last.pth", **ckpt)
        if improved:
            save_checkpoint(run_dir / "best.pth", **ckpt)
        run_log.write(record)
        quality = record.get("pseudo_label_quality")
        log.info(
            "epoch %d/%d | clusters %d | outliers %d (%.1f%%)%s | loss %.3f%s%s | %.0fs",
            epoch + 1,
            cfg.train.epochs,
            labels.num_clusters,
            labels.num_outliers,
            100 * labels.outlier_ratio,
            f" | ARI {quality['ari']:.3f} NMI {quality['nmi']:.3f}" if quality else "",
            sum(losses.values()),
            _fmt_metrics("test ", test_m),
            _fmt_metrics("val ", val_m),
            time.time() - started,
        )
    return {
        "run_dir": str(run_dir),
        "epochs": state.epoch,
        "best_epoch": state.best_epoch,
        "best_on": cfg.eval.select_best_on,
        "final_test": _metrics_record(test_m) if test_m is not None else None,
        "final_val": _metrics_record(val_m) if val_m is not None else None,
    }
