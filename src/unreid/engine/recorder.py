"""The run folder: resolved config, one JSON line per epoch, checkpoints, the log line,
and the last epoch's pseudo labels (`pseudo_labels.json`, for the report).

Everything a run leaves behind is written here, so the loop only says what
happened in an epoch and the format of what is kept is decided in one place.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import torch

from unreid.checkpoint import save_checkpoint
from unreid.config import Config, dump_config
from unreid.data.samples import Sample
from unreid.engine.setup import RunState, TrainingRun
from unreid.evaluation import RankingMetrics
from unreid.pseudo_labels import PseudoLabels

log = logging.getLogger("unreid")


def metrics_record(m: RankingMetrics) -> dict[str, float]:
    return {"mAP": m.mAP, "rank1": m.rank1, "rank5": m.rank5, "rank10": m.rank10}


def _fmt(prefix: str, m: RankingMetrics | None) -> str:
    return "" if m is None else f" | {prefix}mAP {100 * m.mAP:.1f} R1 {100 * m.rank1:.1f}"


class RunRecorder:
    """Owns `<out_dir>/<name>/`: `config.yaml`, `log.jsonl`, `last.pth`, `best.pth`."""

    def __init__(self, cfg: Config, resumed: bool) -> None:
        self.cfg = cfg
        self.run_dir = Path(cfg.out_dir) / cfg.name
        self.run_dir.mkdir(parents=True, exist_ok=True)
        dump_config(cfg, self.run_dir / "config.yaml")
        self.log_path = self.run_dir / "log.jsonl"
        if not resumed and self.log_path.exists():
            log.warning("%s already holds a run: starting afresh over it", self.run_dir)
            self.log_path.unlink()
            (self.run_dir / "best.pth").unlink(missing_ok=True)
        self.last: dict[str, RankingMetrics] = {}

    def write(self, record: dict[str, Any]) -> None:
        with open(self.log_path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def untrained(self, m: RankingMetrics) -> None:
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
    ) -> None:
        """Record a finished epoch: its line in log.jsonl, `last.pth`, `best.pth` if better."""
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
        if true_ids is not None:
            record["pseudo_label_quality"] = labels.quality(true_ids)
        for split, m in metrics.items():
            record[split] = metrics_record(m)
        selector = metrics.get(cfg.eval.select_best_on)
        improved = selector is not None and selector.mAP > state.best_map
        if improved:
            state.best_map, state.best_epoch = selector.mAP, epoch + 1
        state.epoch = epoch + 1
        ckpt = {
            **run.state_dicts(),
            "rng": torch.get_rng_state(),
            "state": vars(state).copy(),
            "config": cfg.to_dict(),
        }
        save_checkpoint(self.run_dir / "last.pth", **ckpt)
        if improved:
            save_checkpoint(self.run_dir / "best.pth", **ckpt)
        self.write(record)
        self.last = metrics
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

    def pseudo_labels(self, epoch: int, labels: PseudoLabels, samples: list[Sample]) -> None:
        """This epoch's clusters of the training images, for the report's contact sheets.

        Overwritten every epoch (the report shows the last), written atomically.
        """
        payload = {
            "epoch": epoch + 1,
            "paths": [s.path for s in samples],
            "cameras": [s.camera for s in samples],
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
        test, val = self.last.get("test"), self.last.get("val")
        return {
            "run_dir": str(self.run_dir),
            "epochs": state.epoch,
            "best_epoch": state.best_epoch,
            "best_on": self.cfg.eval.select_best_on,
            "final_test": metrics_record(test) if test is not None else None,
            "final_val": metrics_record(val) if val is not None else None,
        }
