"""`unreid` command line: demo, train, eval, synth, presets, list."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from unreid.config import ConfigError, config_from_dict, list_presets, load_config

log = logging.getLogger("unreid")


def _setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )


def cache_dir() -> Path:
    return Path(os.environ.get("UNREID_CACHE", Path.home() / ".cache" / "unreid"))


# --------------------------------------------------------------------------- synth
def _synth_fields() -> list[dataclasses.Field]:
    from unreid.data.synthetic import SynthConfig

    return [
        f
        for f in dataclasses.fields(SynthConfig)
        if f.type in ("int", "float", "str", int, float, str)
    ]


def _add_synth_args(p: argparse.ArgumentParser) -> None:
    from unreid.data.synthetic import SynthConfig

    defaults = SynthConfig()
    for f in _synth_fields():
        typ = {"int": int, "float": float, "str": str}.get(f.type, f.type)  # type: ignore[arg-type]
        p.add_argument(
            f"--{f.name.replace('_', '-')}",
            type=typ,
            default=getattr(defaults, f.name),
            help=f"(default {getattr(defaults, f.name)})",
        )


def cmd_synth(args: argparse.Namespace) -> int:
    from unreid.data.synthetic import SynthConfig, generate_synthetic

    cfg = SynthConfig(**{f.name: getattr(args, f.name) for f in _synth_fields()})
    started = time.time()
    counts = generate_synthetic(args.out, cfg, progress=True)
    print(f"wrote synthetic dataset to {args.out} in {time.time() - started:.1f}s: {counts}")
    return 0


# --------------------------------------------------------------------------- train / eval
def cmd_train(args: argparse.Namespace) -> int:
    from unreid.engine import train

    overrides = list(args.overrides)
    # --source/--target: sugar for the domain-adaptation keys, applied before the
    # explicit overrides so those still win
    if args.source:
        overrides.insert(0, f"data.source={args.source}")
    if args.target:
        overrides.insert(0, f"data.dataset={args.target}")
    cfg = load_config(args.config, overrides)
    if args.out:
        cfg.out_dir = str(Path(args.out).parent)
        cfg.name = Path(args.out).name
    summary = train(cfg, resume=args.resume, progress=not args.no_progress)
    print(json.dumps(summary, indent=2))
    return 0


def _histogram_baseline(dataset: Any) -> Any:
    from unreid.baseline import histogram_features
    from unreid.engine import evaluate_samples

    qf = histogram_features([s.path for s in dataset.query])
    gf = histogram_features([s.path for s in dataset.gallery])
    return evaluate_samples(qf, gf, dataset.query, dataset.gallery)


def cmd_eval(args: argparse.Namespace) -> int:
    from unreid.data.datasets import load_dataset

    if args.baseline:
        if not (args.dataset and args.root):
            raise ConfigError("eval --baseline needs --dataset and --root")
        dataset = load_dataset(args.dataset, args.root)
        metrics = _histogram_baseline(dataset)
        _print_metrics(f"histogram baseline on {args.dataset}", metrics)
        return 0
    if not args.checkpoint:
        raise ConfigError("eval needs --checkpoint PATH (or --baseline histogram)")
    from unreid.checkpoint import load_checkpoint
    from unreid.engine import evaluate_model, resolve_device
    from unreid.features import Extractor
    from unreid.models.reid_model import build_model

    ckpt = load_checkpoint(args.checkpoint)
    if not isinstance(ckpt.get("config"), dict) or "model" not in ckpt:
        raise ConfigError(
            f"{args.checkpoint}: not an unreid training checkpoint (it has no 'config' and "
            "'model' entries; a bare state dict can be used as model.pretrained instead)"
        )
    overrides = list(args.overrides)
    if args.dataset:
        overrides.append(f"data.dataset={args.dataset}")
    if args.root:
        overrides.append(f"data.root={args.root}")
    cfg = config_from_dict(ckpt["config"], origin=args.checkpoint, overrides=overrides)
    cfg.model.pretrained = "none"  # weights come from the checkpoint
    dataset = load_dataset(cfg.data.dataset, cfg.data.root)
    if not dataset.has_test_split:
        raise ConfigError(f"{cfg.data.dataset} at {cfg.data.root} has no query/gallery split")
    device = resolve_device(cfg.train.device)
    model = build_model(cfg.model)
    model.load_state_dict(ckpt["model"])
    d = cfg.data
    extract = Extractor(d.height, d.width, cfg.eval.batch_size, d.workers, device)
    metrics = evaluate_model(
        model.to(device), dataset.query, dataset.gallery, extract, rerank=cfg.eval.rerank
    )
    _print_metrics(f"{args.checkpoint} on {cfg.data.dataset}", metrics)
    return 0


def _print_metrics(title: str, m: Any) -> None:
    print(
        f"{title}: mAP {100 * m.mAP:.1f}  R1 {100 * m.rank1:.1f}  R5 {100 * m.rank5:.1f}  "
        f"R10 {100 * m.rank10:.1f}  ({m.num_valid_queries} queries)"
    )


# --------------------------------------------------------------------------- demo
def cmd_demo(args: argparse.Namespace) -> int:
    from unreid.data.datasets import load_dataset
    from unreid.data.synthetic import SynthConfig, generate_synthetic, is_generated
    from unreid.engine import train

    started = time.time()
    cfg = load_config("demo", args.overrides)
    synth = SynthConfig(ids=args.ids, seed=args.seed)
    data_dir = (
        Path(args.data)
        if args.data
        else cache_dir() / f"synthetic-demo-ids{args.ids}-seed{args.seed}"
    )
    if not is_generated(data_dir, synth):
        log.info("generating the synthetic dataset in %s", data_dir)
        generate_synthetic(data_dir, synth, progress=not args.no_progress)
    else:
        log.info("using the cached synthetic dataset in %s", data_dir)
    cfg.data.root = str(data_dir)
    out = Path(args.out)
    cfg.out_dir, cfg.name = str(out.parent), out.name

    hist = _histogram_baseline(load_dataset("synthetic", data_dir))
    log.info("histogram baseline: mAP %.1f R1 %.1f", 100 * hist.mAP, 100 * hist.rank1)
    cfg.eval.at_start = True
    summary = train(cfg, progress=not args.no_progress)
    before = _read_epoch0(out / "log.jsonl")
    after = summary["final_test"]
    rows = [
        ("histogram baseline", hist.mAP, hist.rank1),
        ("untrained network", *before),
        ("Cluster Contrast", after["mAP"], after["rank1"]),
    ]
    print("\nunreid demo: synthetic test split (query vs gallery)")
    print(f"  {'':22s} {'mAP':>6s} {'R1':>6s}")
    for name, m, r1 in rows:
        print(f"  {name:22s} {100 * m:6.1f} {100 * r1:6.1f}")
    elapsed = time.time() - started
    result = {
        "dataset": str(data_dir),
        "run_dir": str(out),
        "seconds": round(elapsed, 1),
        "histogram": {"mAP": hist.mAP, "rank1": hist.rank1},
        "untrained": {"mAP": before[0], "rank1": before[1]},
        "trained": after,
        "config": cfg.to_dict(),
    }
    (out / "summary.json").write_text(json.dumps(result, indent=2))
    files = ", ".join(sorted(p.name for p in out.iterdir() if p.is_file()))
    print(f"\noutputs in {out}: {files} ({elapsed:.0f}s)")
    return 0


def _read_epoch0(path: Path) -> tuple[float, float]:
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        if rec.get("epoch") == 0:
            return rec["test"]["mAP"], rec["test"]["rank1"]
    raise RuntimeError(f"{path}: no epoch-0 evaluation recorded")


# --------------------------------------------------------------------------- list
def _lister(module: str, name: str):
    def names() -> list[str]:
        import importlib

        return getattr(importlib.import_module(module), name)()

    return names


LISTERS = {
    "backbones": _lister("unreid.models", "list_backbones"),
    "clusterers": _lister("unreid.pseudo_labels.clusterers", "list_clusterers"),
    "datasets": _lister("unreid.data.datasets", "list_datasets"),
    "memories": _lister("unreid.memory", "list_memories"),
    "methods": _lister("unreid.methods", "list_methods"),
    "poolings": _lister("unreid.models", "list_poolings"),
    "presets": list_presets,
}


def cmd_list(args: argparse.Namespace) -> int:
    print("\n".join(LISTERS[args.kind]()))
    return 0


# --------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unreid", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="synthetic data + Cluster Contrast on CPU, before/after mAP")
    p.add_argument("--out", default="runs/demo", help="run folder (default runs/demo)")
    p.add_argument("--data", help="synthetic data folder (default: a cache folder)")
    p.add_argument("--ids", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("overrides", nargs="*", help="config overrides key.sub=value")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("train", help="train a method from a preset or YAML file")
    p.add_argument("--config", required=True, help="preset name or YAML path")
    p.add_argument("--resume", help="checkpoint to resume from (last.pth)")
    p.add_argument("--out", help="run folder (default <out_dir>/<name> from the config)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--source", help="labelled source dataset for domain adaptation (data.source)")
    p.add_argument("--target", help="unlabelled target dataset (data.dataset)")
    p.add_argument("overrides", nargs="*", help="config overrides key.sub=value")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="evaluate a checkpoint or a non-learned baseline")
    p.add_argument("--checkpoint")
    p.add_argument("--baseline", choices=["histogram"])
    p.add_argument("--dataset")
    p.add_argument("--root")
    p.add_argument("overrides", nargs="*")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("synth", help="write the procedural synthetic dataset (Market-1501 layout)")
    p.add_argument("--out", required=True)
    _add_synth_args(p)
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("presets", help="list the config presets")
    p.set_defaults(func=lambda a: print("\n".join(list_presets())) or 0)

    p = sub.add_parser("list", help="list the registered names of one kind")
    p.add_argument("kind", choices=sorted(LISTERS))
    p.set_defaults(func=cmd_list)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    try:
        return args.func(args)
    except (ConfigError, FileNotFoundError, ValueError, RuntimeError) as err:
        # Errors from bad input already name the key or file; a traceback adds nothing.
        if args.verbose:
            raise
        print(f"unreid: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
