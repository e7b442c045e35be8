"""`unreid eval`: a checkpoint on its dataset's test split, or the histogram baseline."""

from __future__ import annotations

import argparse

from unreid.cli.common import histogram_baseline, print_metrics
from unreid.errors import ConfigError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a checkpoint or a non-learned baseline")
    p.add_argument("--checkpoint")
    p.add_argument("--baseline", choices=["histogram"])
    p.add_argument("--dataset")
    p.add_argument("--root")
    p.add_argument("overrides", nargs="*")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from unreid.data.datasets import load_dataset

    if args.baseline:
        if not (args.dataset and args.root):
            raise ConfigError("eval --baseline needs --dataset and --root")
        dataset = load_dataset(args.dataset, args.root)
        metrics = histogram_baseline(dataset)
        print_metrics(f"histogram baseline on {args.dataset}", metrics)
        return 0
    if not args.checkpoint:
        raise ConfigError("eval needs --checkpoint PATH (or --baseline histogram)")
    from unreid.checkpoint import inference_state, load_checkpoint
    from unreid.config import config_from_dict
    from unreid.engine import evaluate_model, resolve_device
    from unreid.features import Extractor
    from unreid.models.reid_model import model_for_state

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
    dataset = load_dataset(cfg.data.dataset, cfg.data.root)
    if not dataset.has_test_split:
        raise ConfigError(f"{cfg.data.dataset} at {cfg.data.root} has no query/gallery split")
    device = resolve_device(cfg.train.device)
    state = inference_state(ckpt)  # the network the run evaluated (ICE: its teacher)
    model = model_for_state(cfg.model, (cfg.data.height, cfg.data.width), state)
    model.load_state_dict(state)
    d = cfg.data
    extract = Extractor(d.height, d.width, cfg.eval.batch_size, d.workers, device)
    metrics = evaluate_model(
        model.to(device), dataset.query, dataset.gallery, extract, rerank=cfg.eval.rerank
    )
    print_metrics(f"{args.checkpoint} on {cfg.data.dataset}", metrics)
    return 0
