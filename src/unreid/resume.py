"""What resuming a run may change, and where a run folder's resumable state is.

A resumed run is the run it continues: its own saved config, not whatever the
command line says today. Only what does not change what is computed may be
overridden (how long it trains, where the data and the outputs are, how fast
and how often it evaluates); anything else is refused by name, and so is a
config that differs from the saved one on such a key.

Only a training checkpoint (`last.pth`) can be continued: `best.pth` keeps the
model and no optimizer, schedule or memories, so a run "resumed" from it could
not be the run it claims to continue, and is refused before anything is read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from unreid.checkpoint import TRAINING, checkpoint_kind, peek_checkpoint
from unreid.config import Config, config_from_dict, parse_override
from unreid.errors import ConfigError

RESUMABLE = (
    "name",
    "out_dir",
    "train.epochs",
    "train.device",
    "train.threads",
    "train.extract_batch_size",
    "data.root",
    "data.source_root",
    "data.workers",
    "data.bad_images",
    "eval.every",
    "eval.batch_size",
    "eval.rerank",
    "log.tensorboard",
)


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(data, dict):
        return {prefix.rstrip("."): data}
    out: dict[str, Any] = {}
    for key, value in data.items():
        out.update(_flat(value, f"{prefix}{key}."))
    return out


def changed_keys(saved: Config, given: Config) -> dict[str, tuple[Any, Any]]:
    """Keys outside `RESUMABLE` whose value differs: key -> (saved, given)."""
    a, b = _flat(saved.to_dict()), _flat(given.to_dict())
    return {
        k: (a.get(k), b.get(k))
        for k in sorted(set(a) | set(b))
        if k not in RESUMABLE and a.get(k) != b.get(k)
    }


def refuse_changes(saved: Config, given: Config, source: str) -> None:
    diffs = changed_keys(saved, given)
    if diffs:
        listed = "; ".join(f"{k}: run {a!r}, now {b!r}" for k, a, b in _triples(diffs))
        raise ConfigError(
            f"{source}: cannot resume with a different config ({listed}); only "
            f"{', '.join(RESUMABLE)} may change on resume. Start a new run (another "
            "--out, or --overwrite) to train with other settings."
        )


def _triples(diffs: dict[str, tuple[Any, Any]]) -> list[tuple[str, Any, Any]]:
    return [(k, a, b) for k, (a, b) in diffs.items()]


class InferenceCheckpointError(ConfigError):
    """`--resume` names an inference-only checkpoint; the message points to `last.pth`."""


def require_training_checkpoint(path: Path, ckpt: dict[str, Any]) -> None:
    """Refuse `ckpt` (read from `path`) unless it holds what resuming needs."""
    if checkpoint_kind(ckpt) == TRAINING:
        return
    last = path.parent / "last.pth"
    raise InferenceCheckpointError(
        f"--resume {path}: {path.name} is an inference checkpoint (model weights, config "
        "and preprocessing only; no optimizer, schedule or method memories), so training "
        f"cannot continue from it. Resume from the run's last.pth instead: --resume {last}"
        + ("" if last.is_file() else f" (not there: {path.parent} holds no last.pth yet)")
    )


def resume_point(path: str | Path) -> tuple[Path, Path | None]:
    """(run folder, its last checkpoint or None) from a run folder or a checkpoint file.

    An inference checkpoint (`best.pth`) is refused here, before any data is read.
    A file that cannot be read at all is returned as is: loading it names the cause.
    """
    path = Path(path)
    if path.is_dir():
        last = path / "last.pth"
        return path, last if last.is_file() else None
    if path.is_file():
        try:
            ckpt = peek_checkpoint(path)
        except (OSError, ValueError):
            return path.parent, path
        if isinstance(ckpt, dict):
            require_training_checkpoint(path, ckpt)
        return path.parent, path
    raise FileNotFoundError(f"--resume {path}: no such run folder or checkpoint")


def resume_config(run_dir: Path, checkpoint: dict | None, overrides: list[str]) -> Config:
    """The run's own config (from its checkpoint, else its config.yaml) plus allowed overrides.

    Other keys may be repeated with the run's own value (the interrupted command line
    with `--resume RUN` added); a different value is refused naming both.
    """
    allowed = [t for t in overrides if parse_override(t)[0] in RESUMABLE]
    if checkpoint is not None:
        saved, origin = checkpoint["config"], f"{run_dir / 'last.pth'}"
    else:
        config_path = run_dir / "config.yaml"
        if not config_path.is_file():
            raise FileNotFoundError(
                f"--resume {run_dir}: neither last.pth nor config.yaml is there"
            )
        saved, origin = yaml.safe_load(config_path.read_text()), str(config_path)
    saved = runs_before_fused_optimizer(saved)
    cfg = config_from_dict(saved, origin=origin, overrides=allowed)
    if len(allowed) < len(overrides):
        refuse_other_values(saved, origin, cfg, overrides)
    cfg.out_dir, cfg.name = str(run_dir.parent), run_dir.name
    return cfg


def runs_before_fused_optimizer(saved: dict) -> dict:
    """A run saved before `train.fused_optimizer` existed stepped with torch's default
    optimizer loop: it resumes with that loop, so its steps stay what they were."""
    train = saved.get("train") if isinstance(saved, dict) else None
    if not isinstance(train, dict) or "fused_optimizer" in train:
        return saved
    return {**saved, "train": {**train, "fused_optimizer": False}}


def refuse_other_values(saved: dict, origin: str, cfg: Config, overrides: list[str]) -> None:
    """Refuse an override of a non-resumable key unless it repeats the run's own value."""
    try:
        diffs: dict[str, tuple[Any, Any]] | None = changed_keys(
            cfg, config_from_dict(saved, origin=origin, overrides=overrides)
        )
    except ConfigError:  # the value does not even fit the run's config (method=other)
        diffs = None
    flat = _flat(saved)
    given = [parse_override(t) for t in overrides if parse_override(t)[0] not in RESUMABLE]
    for key, value in given:
        if diffs is not None and key not in diffs:
            continue
        run, now = diffs[key] if diffs is not None else (flat.get(key), value)
        raise ConfigError(
            f"{key}: cannot be changed on --resume (it changes what the run computes): "
            f"run {run!r}, given {now!r}; only {', '.join(RESUMABLE)} may change, the "
            "other keys may only repeat the run's values"
        )
    for key, (run, now) in (diffs or {}).items():  # implied by a key given: name it too
        raise ConfigError(f"{key}: cannot be changed on --resume: run {run!r}, given {now!r}")
