"""The run folder: resolved config, one JSON line per epoch, checkpoints, the log line,
and the last epoch's pseudo labels (`pseudo_labels.json`, for the report).

Everything a run leaves behind is written here, so the loop only says what
happened in an epoch and the format of what is kept is decided in one place.
Two checkpoints, for two uses: `last.pth` continues the run (optimizer and
memories included), `best.pth` is what one deploys (`unreid.inference`'s
inference checkpoint: weights, config, preprocessing), so the large training
state (Adam's moments: twice the model) is written once per epoch, not twice.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unreid.checkpoint import (
    INFERENCE_MODEL,
    TMP_SUFFIX,
    TRAINING,
    load_checkpoint,
    save_checkpoint,
)
from unreid.config import Config, config_from_dict, dump_config
from unreid.data.samples import Sample
from unreid.engine.replacement import drop, move_aside, put_back, recover
from unreid.engine.setup import RunState, TrainingRun
from unreid.engine.stage_clock import StageClock
from unreid.evaluation import RankingMetrics
from unreid.inference import inference_checkpoint
from unreid.pseudo_labels import PseudoLabels
from unreid.report.tensorboard import TensorBoardWriter
from unreid.resume import refuse_changes, require_training_checkpoint, resume_point

log = logging.getLogger("unreid")


def metrics_record(m: RankingMetrics) -> dict[str, float]:
    return {"mAP": m.mAP, "rank1": m.rank1, "rank5": m.rank5, "rank10": m.rank10}


def _fmt(prefix: str, m: RankingMetrics | None) -> str:
    return "" if m is None else f" | {prefix}mAP {100 * m.mAP:.1f} R1 {100 * m.rank1:.1f}"


RUN_FILES = ("config.yaml", "log.jsonl", "last.pth", "best.pth", "pseudo_labels.json")
CHECKPOINTS = ("last.pth", "best.pth")
REPORT = "report.html"  # written by `unreid.report` from the files above: stale once they go


class RunFolderError(RuntimeError):
    """A run folder that holds another run, or no run to resume; the message says what to do."""


def finite(value: Any) -> Any:
    """The record with every NaN / inf replaced by None, so log.jsonl stays valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


class RunRecorder:
    """Owns `<out_dir>/<name>/`: `config.yaml`, `log.jsonl`, `last.pth`, `best.pth`.

    Nothing in the folder is touched until `start()`, which comes after the data
    and the model were built: a typo in a path never costs an earlier run (only an
    `--overwrite` killed before its first checkpoint is finished first, see
    `replacement.py`). A folder that holds a run with a checkpoint is refused unless
    the run is resumed or `overwrite` says so; one whose run stopped before its first
    checkpoint has nothing to resume and is reused, with a log line. `--overwrite`
    keeps the old run aside until the new one writes `last.pth`, and puts it back
    (`abandon`) if the new one ends before.
    """

    def __init__(
        self,
        cfg: Config,
        resume: str | Path | None = None,
        overwrite: bool = False,
        main: bool = True,
    ) -> None:
        self.cfg = cfg
        self.main = main  # under DDP only rank 0 writes; every rank restores
        self.run_dir = Path(cfg.out_dir) / cfg.name
        self.log_path = self.run_dir / "log.jsonl"
        self.checkpoint: Path | None = None
        self.resumed = resume is not None
        self.overwrite = overwrite
        self.last: dict[str, RankingMetrics] = {}
        self.tensorboard: TensorBoardWriter | None = None
        self.aside: Path | None = None  # the replaced run, until this one's first checkpoint
        if main:
            recover(self.run_dir)
        if self.resumed:
            folder, self.checkpoint = resume_point(resume)
            if folder.resolve() != self.run_dir.resolve():
                raise RunFolderError(
                    f"--resume {resume} belongs to {folder}, but the config names {self.run_dir}"
                )
        self.held = [f for f in (*RUN_FILES, REPORT) if (self.run_dir / f).exists()]
        self.finished = any(f in self.held for f in CHECKPOINTS)  # anything to resume
        if self.finished and not (self.resumed or overwrite):
            raise RunFolderError(
                f"{self.run_dir} already holds a run ({', '.join(self.held)}); resume it with "
                f"--resume {self.run_dir}, write elsewhere with --out DIR (or name=...), "
                "or replace it with --overwrite"
            )

    def start(self, run: TrainingRun) -> RunState:
        """Claim the folder: clear stale temp files, restore or replace, write config.yaml."""
        state = RunState()
        if self.checkpoint is not None:
            ckpt = load_checkpoint(self.checkpoint)
            require_training_checkpoint(self.checkpoint, ckpt)
            saved = config_from_dict(ckpt["config"], str(self.checkpoint))
            del ckpt  # restore reads it again; two copies of a large one need not coexist
            refuse_changes(saved, self.cfg, str(self.checkpoint))
            state = run.restore(self.checkpoint)
        if not self.main:
            return state
        if self.checkpoint is None and self.overwrite and self.finished:
            self.aside = move_aside(self.run_dir)  # back if this run ends before last.pth
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.run_dir.glob(f"*{TMP_SUFFIX}"):
            stale.unlink()  # a checkpoint write that was killed: its complete twin is intact
        if self.checkpoint is not None:
            self._keep_records(lambda r: r.get("epoch", 0) <= state.epoch)
        elif self.held and self.aside is None:  # nothing to continue from: start afresh
            if not self.finished:
                log.info(
                    "%s held a run that stopped before its first checkpoint (%s): nothing "
                    "to resume, so this run starts there in its place",
                    self.run_dir,
                    ", ".join(self.held),
                )
            for name in (*RUN_FILES, REPORT):
                (self.run_dir / name).unlink(missing_ok=True)
        dump_config(self.cfg, self.run_dir / "config.yaml")
        if self.cfg.log.tensorboard:  # scalars beside log.jsonl, which stays the record
            self.tensorboard = TensorBoardWriter(self.run_dir)
        return state

    def abandon(self) -> None:
        """The run ends (an error, Ctrl-C) before its first checkpoint: put back what it replaced."""
        if self.aside is not None:
            put_back(self.run_dir, self.aside)
            self.aside = None

    def _keep_records(self, keep: Any) -> None:
        """Drop log lines of epochs after the checkpoint (written before a crash lost them)."""
        if not self.log_path.exists():
            return
        lines = [x for x in self.log_path.read_text().splitlines() if x.strip()]
        kept = [x for x in lines if keep(json.loads(x))]
        self.log_path.write_text("".join(x + "\n" for x in kept))

    def write(self, record: dict[str, Any]) -> None:
        if not self.main:
            return
        with open(self.log_path, "a") as f:
            f.write(json.dumps(finite(record), allow_nan=False) + "\n")
        if self.tensorboard is not None:
            self.tensorboard.epoch(record)

    def untrained(self, m: RankingMetrics) -> None:
        if not self.main:
            return
        log.info("epoch 0 (untrained)%s", _fmt("test ", m))
        self.write({"epoch": 0, "test": metrics_record(m)})

    def epoch(
        self,
        epoch: int,
        labels: PseudoLabels,
        losses: dict[str, float],
        metrics: dict[str, RankingMetrics],
        run: TrainingRun,
        state: RunState,
        true_ids: list[int | None] | None,
        started: float,
        clock: StageClock | None = None,
    ) -> None:
        """Record a finished epoch: its line in log.jsonl, `last.pth`, `best.pth` if better.

        `last.pth` holds all a resume needs; `best.pth` only what inference needs.
        """
        cfg = self.cfg
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "clusters": labels.num_clusters,
            "outliers": labels.num_outliers,
            "cluster_sizes": labels.stats(),
            "losses": losses,
            "lr": run.scheduler.get_last_lr()[0],
            "seconds": round(time.time() - started, 2),
        }
        if clock is not None:  # where the epoch's time went (checkpointing not included)
            record["stage_seconds"] = clock.record()
        if true_ids is not None:
            record["pseudo_label_quality"] = labels.quality(true_ids)
        known = None if true_ids is None or None in true_ids else np.asarray(true_ids)
        diagnostics = run.method.diagnostics(known) if losses else {}  # a skipped epoch: none
        if diagnostics:
            record["diagnostics"] = diagnostics
        for split, m in metrics.items():
            record[split] = metrics_record(m)
        selector = metrics.get(cfg.eval.select_best_on)
        improved = selector is not None and selector.mAP > state.best_map
        if improved:
            state.best_map, state.best_epoch = selector.mAP, epoch + 1
        state.epoch = epoch + 1
        ckpt = {
            "kind": TRAINING,
            **run.state_dicts(),
            "rng": torch.get_rng_state(),
            "state": vars(state).copy(),
            "config": cfg.to_dict(),
        }
        evaluated = run.method.extraction_model(run.model)
        if evaluated is not run.model:  # inference reads these (checkpoint.inference_state)
            ckpt[INFERENCE_MODEL] = evaluated.state_dict()
        # The record first: a crash before the checkpoint leaves a line that a resume
        # drops (it is past the checkpoint's epoch), never a checkpoint with no line.
        self.last = metrics
        if not self.main:
            return
        self.write(record)
        save_checkpoint(self.run_dir / "last.pth", **ckpt)
        if self.aside is not None:  # this run can be resumed now: the replaced one goes
            drop(self.run_dir, self.aside)
            self.aside = None
        if improved:
            scores = {split: metrics_record(m) for split, m in metrics.items()}
            best = inference_checkpoint(evaluated.state_dict(), cfg, ckpt["state"], scores)
            save_checkpoint(self.run_dir / "best.pth", **best)
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
            _fmt("test ", metrics.get("test")),
            _fmt("val ", metrics.get("val")),
            time.time() - started,
        )

    def pseudo_labels(
        self,
        epoch: int,
        labels: PseudoLabels,
        samples: list[Sample],
        camera_names: list[str] | None = None,
    ) -> None:
        """This epoch's clusters of the training images, for the report's contact sheets.

        Overwritten every epoch (the report shows the last), written atomically.
        `camera_names` (a folder dataset's camera folders) lets the sheets say `entrance`
        where the index alone would say `c3`.
        """
        if not self.main:
            return
        payload = {
            "epoch": epoch + 1,
            "paths": [s.path for s in samples],
            "cameras": [s.camera for s in samples],
            "camera_names": camera_names,
            "true_ids": [s.pid for s in samples]
            if all(s.pid is not None for s in samples)
            else None,
            "labels": [int(x) for x in labels.labels],
        }
        path = self.run_dir / "pseudo_labels.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(payload))
        tmp.replace(path)

    def summary(self, state: RunState) -> dict[str, Any]:
        if self.tensorboard is not None:
            self.tensorboard.close()
        test, val = self.last.get("test"), self.last.get("val")
        return {
            "run_dir": str(self.run_dir),
            "epochs": state.epoch,
            "best_epoch": state.best_epoch,
            "best_on": self.cfg.eval.select_best_on,
            "final_test": metrics_record(test) if test is not None else None,
            "final_val": metrics_record(val) if val is not None else None,
        }
