"""The one training loop: extract → pseudo labels → memories → epoch of steps → evaluate → record.

`train()` reads top to bottom as the algorithm does. What a method changes
(memories, losses, updates, the features it clusters) goes through its
`Method` plug-in; what the run keeps goes through the `RunRecorder`; the
data, model and optimizer are built in `setup.py`.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from unreid.config import Config
from unreid.data.epoch_batches import LoaderPlan, epoch_batches
from unreid.engine.evaluate import evaluate_model
from unreid.engine.recorder import RunRecorder
from unreid.engine.setup import (
    RunState,
    TrainingData,
    build_run,
    load_training_data,
    resolve_device,
    seed_everything,
)
from unreid.engine.steps import train_one_epoch
from unreid.features import Extractor
from unreid.methods import Method
from unreid.models.dsbn import ALL_ROWS, source_rows
from unreid.pseudo_labels import PseudoLabels
from unreid.pseudo_labels.clusterers import make_pseudo_labels


def train(cfg: Config, resume: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Train `cfg.method` unsupervised on `cfg.data`; returns a summary of the run."""
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)
    seed_everything(cfg.train.seed)
    device = resolve_device(cfg.train.device)
    recorder = RunRecorder(cfg, resumed=bool(resume))
    data = load_training_data(cfg)
    run = build_run(cfg, data, device)
    state = run.restore(resume) if resume else RunState()
    d, t = cfg.data, cfg.train
    extract = Extractor(d.height, d.width, t.extract_batch_size, d.workers, device, progress)
    evaluate = extract.with_batch_size(cfg.eval.batch_size)
    plan = LoaderPlan(t.num_instances, t.iters, t.seed, d.workers, device.type == "cuda")

    def metrics(split: str):
        return evaluate_model(run.model, *data.split(split), evaluate, rerank=cfg.eval.rerank)

    if state.epoch == 0 and cfg.eval.at_start and data.has_test:
        recorder.untrained(metrics("test"))
    for epoch in range(state.epoch, t.epochs):
        started = time.time()
        # Reseed per epoch: a resumed run replays exactly what an uninterrupted one does,
        # whatever evaluation or other RNG consumers ran before.
        seed_everything(t.seed * 1000 + epoch)
        # 1. features of every training image, in dataset order
        features = extract(run.model, data.train, f"extract {epoch + 1}")
        # 2. pseudo labels on the method's view of the features (-1 = outlier, sits out)
        labels = cluster(cfg, run.method, epoch, features, data)
        recorder.pseudo_labels(epoch, labels, data.train)
        # 3. memories from this epoch's clusters (and, adapting domains, the source classes)
        if data.source is not None and run.method.wants_source_features(epoch):
            with source_rows(run.model, ALL_ROWS):  # the source statistics, under DSBN
                feats = extract(run.model, data.source.samples, f"extract source {epoch + 1}")
            run.method.start_source(feats.to(device), data.source.labels.to(device))
            del feats
        run.method.start_epoch(epoch, features.to(device), labels, data.cameras)
        # 4. a fixed number of P×K steps over the clustered images (adapting: half source)
        steps, label_of, camera_of = epoch_batches(
            data.images, labels.labels, data.cameras, data.source, t.batch_size, plan, epoch
        )
        desc = f"train {epoch + 1}/{t.epochs}"
        losses = train_one_epoch(run, steps, t.iters, label_of, camera_of, device, desc, progress)
        run.scheduler.step()
        # 5. evaluation every `eval.every` epochs and after the last; 6. record, checkpoint
        due = (epoch + 1) % cfg.eval.every == 0 or epoch + 1 == t.epochs
        scores = {split: metrics(split) for split in data.eval_splits} if due else {}
        recorder.epoch(epoch, labels, losses, scores, run, state, data.true_ids, started)
    return recorder.summary(state)


def cluster(
    cfg: Config, method: Method, epoch: int, features: torch.Tensor, data: TrainingData
) -> PseudoLabels:
    """This epoch's pseudo labels, from the features the method wants clustered."""
    to_cluster = method.clustering_features(epoch, features, data.train)
    name = "ground_truth" if cfg.train.ground_truth else cfg.cluster.method
    labels = make_pseudo_labels(
        name, to_cluster, cfg.cluster, seed=cfg.train.seed, true_ids=data.true_ids
    )
    if labels.num_clusters == 0:
        raise RuntimeError(
            f"epoch {epoch + 1}: clustering found no clusters among {len(features)} images "
            f"(cluster.eps={cfg.cluster.eps}, min_samples={cfg.cluster.min_samples}); "
            "raise eps or check the features"
        )
    return labels
