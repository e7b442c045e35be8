"""The one training loop: extract → pseudo labels → memories → epoch of steps → evaluate → record.

`train()` reads top to bottom as the algorithm does. What a method changes
(memories, losses, updates, the features it clusters) goes through its
`Method` plug-in; what the run keeps goes through the `RunRecorder`; the
data, model and optimizer are built in `setup.py`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from unreid.config import Config
from unreid.data.epoch_batches import SAMPLERS, LoaderPlan, epoch_batches
from unreid.distributed import DistContext, RankBatches
from unreid.engine.evaluate import evaluate_model
from unreid.engine.recorder import RunRecorder
from unreid.engine.setup import RunState, TrainingRun, build_run, resolve_device, seed_everything
from unreid.engine.small_sets import dbscan_hint, fit_to_set
from unreid.engine.stage_clock import StageClock
from unreid.engine.steps import train_one_epoch
from unreid.engine.training_data import TrainingData, load_training_data
from unreid.errors import ConfigError
from unreid.faults import kill_point
from unreid.features import Extractor
from unreid.models.dsbn import ALL_ROWS, source_rows
from unreid.pseudo_labels import PseudoLabels
from unreid.pseudo_labels.clusterers import make_pseudo_labels, sharded_dbscan, shards

log = logging.getLogger("unreid")


class DegenerateClustering(RuntimeError):
    """Pseudo labels no training can use; the message gives the numbers and what to change."""


def train(
    cfg: Config,
    resume: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train `cfg.method` unsupervised on `cfg.data`; returns a summary of the run.

    Launched by torchrun, every rank runs this same loop on its share of each
    batch (`train.batch_size` stays the global batch); rank 0 clusters and writes.
    """
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)
    seed_everything(cfg.train.seed)
    ctx = DistContext.from_env(resolve_device(cfg.train.device))
    plan = loader_plan(cfg, ctx)  # before any folder or data: it may refuse the sampler
    cfg = replace(cfg, data=cfg.data.with_absolute_roots())  # saved so: resumable from anywhere
    recorder = RunRecorder(cfg, resume, overwrite, main=ctx.is_main())  # never clobbers a run
    data = load_training_data(cfg, progress and ctx.is_main())
    # a small set clusters with k1 scaled to it; the recorder keeps the config as given
    cfg = replace(cfg, cluster=fit_to_set(cfg.cluster, len(data.train)))
    run = build_run(cfg, data, ctx)
    state = recorder.start(run)  # restores the checkpoint when resuming
    try:
        run_epochs(cfg, ctx, plan, data, run, recorder, state, progress and ctx.is_main())
    except BaseException:  # Ctrl-C too: an --overwrite's old run comes back if none was saved
        recorder.abandon()
        raise
    return recorder.summary(state)


def run_epochs(
    cfg: Config,
    ctx: DistContext,
    plan: LoaderPlan,
    data: TrainingData,
    run: TrainingRun,
    recorder: RunRecorder,
    state: RunState,
    show: bool,
) -> None:
    """Epochs `state.epoch` to `train.epochs`: the algorithm, recorded epoch by epoch."""
    d, t = cfg.data, cfg.train
    extract = Extractor(
        d.height, d.width, t.extract_batch_size, d.workers, ctx.device, show, run.precision, ctx
    )
    evaluate = extract.with_batch_size(cfg.eval.batch_size)

    def metrics(split: str):
        net = run.method.extraction_model(run.model)  # usually the model; ICE's teacher
        return evaluate_model(net, *data.split(split), evaluate, rerank=cfg.eval.rerank)

    if state.epoch == 0 and cfg.eval.at_start and data.has_test:
        recorder.untrained(metrics("test"))
    for epoch in range(state.epoch, t.epochs):
        started, clock = time.time(), StageClock(ctx.device)  # log.jsonl: stage_seconds
        # Reseed per epoch: a resumed run replays exactly what an uninterrupted one does,
        # whatever evaluation or other RNG consumers ran before.
        seed_everything(t.seed * 1000 + epoch)
        # 1. features of every training image, in dataset order
        net = run.method.extraction_model(run.model)  # usually the model; ICE's teacher
        with clock.stage("extract"):
            features = extract(net, data.train, f"extract {epoch + 1}")
        # 2. pseudo labels on the method's view of the features (-1 = outlier, sits out)
        with clock.stage("cluster"):
            labels = cluster(cfg, run, epoch, features, data)
        recorder.pseudo_labels(epoch, labels, data.train, data.dataset.camera_names)
        losses: dict[str, float] = {}
        if usable(cfg, labels, epoch):  # a degenerate clustering stops or skips the epoch
            # 3. memories from this epoch's clusters (and, adapting, the source classes)
            with clock.stage("memories"):
                start_memories(run, epoch, features.to(ctx.device), labels, data, extract)
            # 4. P×K steps over the clustered images, train.iters or one pass (adapting: half source)
            train_labels = run.method.training_labels(labels)  # usually labels.labels
            steps, label_of, camera_of = epoch_batches(
                data.images, train_labels, data.cameras, data.source, t.batch_size, plan, epoch
            )
            augment = (data.augment, augment_generator(cfg, ctx, epoch)) if data.augment else ()
            with clock.stage("train"):
                losses = train_one_epoch(
                    run, steps, len(steps), label_of, camera_of, epoch, show, *augment
                )
        run.next_epoch()
        # 5. evaluation every `eval.every` epochs and after the last; 6. record, checkpoint
        due = (epoch + 1) % cfg.eval.every == 0 or epoch + 1 == t.epochs
        with clock.stage("evaluate"):
            scores = {split: metrics(split) for split in data.eval_splits} if due else {}
        recorder.epoch(epoch, labels, losses, scores, run, state, data.true_ids, started, clock)


def loader_plan(cfg: Config, ctx: DistContext) -> LoaderPlan:
    t, d = cfg.train, cfg.data
    if ctx.distributed and not SAMPLERS[t.sampler].groups_of_k:
        raise ConfigError(
            f"train.sampler={t.sampler!r} cuts batches across identities, so they cannot be "
            "split by identity over DDP ranks; use train.sampler=pk under torchrun"
        )
    split = (
        (lambda batches: RankBatches(batches, ctx, t.num_instances)) if ctx.distributed else None
    )
    return LoaderPlan(
        t.num_instances, t.iters, t.seed, d.workers, ctx.device.type == "cuda", split,
        t.sampler, t.epoch_length,
    )  # fmt: skip


def augment_generator(cfg: Config, ctx: DistContext, epoch: int) -> torch.Generator:
    """Batch augmentation's draws: per epoch (exact resume), the same on every rank (each
    applies its rows of the global batch's draws)."""
    where = ctx.device if cfg.data.device_augment else torch.device("cpu")
    return torch.Generator(where).manual_seed(cfg.train.seed * 1000 + epoch)


def cluster(
    cfg: Config, run: TrainingRun, epoch: int, features: torch.Tensor, data: TrainingData
) -> PseudoLabels:
    """This epoch's pseudo labels, from the features the method wants clustered.

    Every rank computes the method's view (it may keep state for `start_epoch`);
    rank 0 clusters and the others receive its labels. Under torchrun the dbscan
    clusterer's kNN and Jaccard rows are split over all ranks (`cluster.shard`).
    """
    to_cluster = run.method.clustering_features(epoch, features, data.train)
    labels = None
    name = "ground_truth" if cfg.train.ground_truth else cfg.cluster.method
    if shards(name, cfg.cluster, run.ctx):
        labels = sharded_dbscan(to_cluster, cfg.cluster, run.ctx)
    elif run.ctx.is_main():
        labels = make_pseudo_labels(
            name, to_cluster, cfg.cluster, seed=cfg.train.seed, true_ids=data.true_ids
        )
    kill_point("cluster")
    return run.ctx.broadcast_object(labels)


def usable(cfg: Config, labels: PseudoLabels, epoch: int) -> bool:
    """False (after a warning) for a degenerate clustering under `cluster.on_degenerate=skip`."""
    problem = degenerate(cfg, labels)
    if problem is None:
        per_batch = cfg.train.batch_size // cfg.train.num_instances
        if labels.num_clusters < per_batch:
            log.warning(
                "epoch %d: %d clusters, fewer than the %d identities a batch holds "
                "(train.batch_size / train.num_instances): identities repeat within batches",
                epoch + 1,
                labels.num_clusters,
                per_batch,
            )
        return True
    message = f"epoch {epoch + 1}: degenerate clustering: {problem}"
    if cfg.cluster.on_degenerate == "stop":
        raise DegenerateClustering(message + " (cluster.on_degenerate=stop)")
    log.warning("%s; training skipped this epoch (cluster.on_degenerate=skip)", message)
    return False


def degenerate(cfg: Config, labels: PseudoLabels) -> str | None:
    """What is wrong with a clustering, with its numbers and the setting to change; or None."""
    c, n = cfg.cluster, len(labels.labels)
    if c.method == "infomap":
        looser = f"lower cluster.infomap_min_sim (now {c.infomap_min_sim})"
        tighter = f"raise cluster.infomap_min_sim (now {c.infomap_min_sim})"
    else:  # DBSCAN: k1 / k2 / min_samples matter as much as eps (small_sets.py)
        looser, tighter = dbscan_hint(n, c, looser=True), dbscan_hint(n, c, looser=False)
    if labels.num_clusters == 0:
        return f"no cluster among {n} images, all are outliers; {looser}"
    if labels.num_clusters == 1 and not cfg.train.ground_truth:
        size = n - labels.num_outliers
        return f"one cluster holds {size} of {n} images: nothing to contrast; {tighter}"
    if labels.outlier_ratio > c.max_outlier_ratio:
        return (
            f"{labels.num_outliers} of {n} images ({100 * labels.outlier_ratio:.0f}%) are "
            f"outliers, above cluster.max_outlier_ratio={c.max_outlier_ratio}; {looser}"
        )
    return None


def start_memories(
    run: TrainingRun,
    epoch: int,
    features: torch.Tensor,
    labels: PseudoLabels,
    data: TrainingData,
    extract: Extractor,
) -> None:
    """The method's memories for this epoch; adapting domains, its source rows first."""
    device = features.device
    if data.source is not None and run.method.wants_source_features(epoch):
        with source_rows(run.model, ALL_ROWS):  # the source statistics, under DSBN
            net = run.method.extraction_model(run.model)
            feats = extract(net, data.source.samples, f"extract source {epoch + 1}")
        run.method.start_source(feats.to(device), data.source.labels.to(device))
        del feats
    run.method.start_epoch(epoch, features, labels, data.cameras)
