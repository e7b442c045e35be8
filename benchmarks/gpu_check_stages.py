"""The five stages of gpu_check.py: each runs its children through `Check` and returns its entry.

An entry holds `status` ("ok"; "partial" when parts were skipped for time; "failed";
"timed_out") and the stage's figures, read back from what the children wrote
(train_throughput.py's --json, the runs' log.jsonl, device_knn.py's JSON lines).
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

HERE = Path(__file__).resolve().parent
MIN_PART_S = {"cuda": 40.0, "cpu": 3.0}  # a part (one arch, one set) starts only with this left
STAGE_KEYS = ("extract", "cluster", "memories", "train", "evaluate")


def status_of(results: list[dict]) -> str:
    """A part's status from its children: any timed out, any failed, or all ok."""
    if any(r["timed_out"] for r in results):
        return "timed_out"
    return "ok" if all(r["rc"] == 0 for r in results) else "failed"


def _status(results: list[dict], skipped: list[str]) -> str:
    status = status_of(results) if results else "skipped"
    return "partial" if status == "ok" and skipped else status


def _set(check):
    from train_throughput import synthetic_set

    s = check.sizes
    return synthetic_set(check.data, s.images, s.height, s.width)


def synth(check) -> dict:
    """`unreid synth` of the set every later stage reads, one generator process per CPU."""
    from unreid.data.synthetic import is_generated

    root, cfg = _set(check)
    entry: dict = {"folder": str(root), "ids": cfg.ids}
    if is_generated(root, cfg):
        entry.update(status="ok", note="the set was already there (not timed)")
    else:
        cmd = [check.python, "-m", "unreid", "synth", "--out", str(root), "--ids", str(cfg.ids),
               "--height", str(cfg.height), "--width", str(cfg.width), "--seed", str(cfg.seed),
               "--workers", "0"]  # fmt: skip
        result = check.run("synth", cmd)
        entry.update(status=_status([result], []), generate_s=result["seconds"])
    for split in ("bounding_box_train", "query", "bounding_box_test"):
        folder = root / split
        entry[split] = len(list(folder.glob("*.jpg"))) if folder.is_dir() else 0
    return entry


def throughput(check) -> dict:
    """train_throughput.py per group of archs: baseline and all on, images/s, peak memory."""
    s, out = check.sizes, check.out / "throughput"
    if not check.dry_run:
        out.mkdir(parents=True, exist_ok=True)
    results, archs, skipped, setting = [], {}, [], {}
    for group in s.arch_groups:
        name = "-".join(group)
        if check.left() < MIN_PART_S[s.device]:
            skipped.extend(group)
            continue
        table = out / f"{name}.json"
        if not check.dry_run:
            table.unlink(missing_ok=True)
        cmd = [check.python, str(HERE / "train_throughput.py"), "--data", str(check.data),
               "--device", s.device, "--images", str(s.images), "--height", str(s.height),
               "--width", str(s.width), "--arch", *group, *s.throughput_args, "--json", str(table)]  # fmt: skip
        results.append(check.run(f"throughput-{name}", cmd))
        if not table.exists():
            archs.update({a: {"status": "failed", "log": results[-1]["log"]} for a in group})
            continue
        data = json.loads(table.read_text())
        setting = {k: v for k, v in data.items() if k != "rows"}
        for row in data["rows"]:
            per = archs.setdefault(row["arch"], {"status": "ok"})
            per[row["config"]] = {k: v for k, v in row.items() if k not in ("arch", "config")}
    for per in archs.values():
        if "baseline" in per and "all on" in per:
            base, on = per["baseline"], per["all on"]
            per["train_speedup"] = round(on["train img/s"] / base["train img/s"], 3)
            per["epoch_speedup"] = round(base["epoch s"] / on["epoch s"], 3)
    entry = {"status": _status(results, skipped), "setting": setting, "archs": archs}
    if skipped:
        entry["note"] = f"not run, for time: {', '.join(skipped)}"
    return entry


def _train_cmd(check, out: Path, *overrides: str) -> list[str]:
    s = check.sizes
    root, _ = _set(check)
    return ["-m", "unreid", "train", "--config", "cluster_contrast/market1501", "--out", str(out),
            "--overwrite", "--no-progress", "--no-report", "data.dataset=market1501", f"data.root={root}",
            "model.pretrained=none", f"train.device={s.device}", "data.decoded_cache=true",
            "data.device_augment=true", "cluster.on_degenerate=skip", *s.recipe_args,
            *overrides]  # fmt: skip


def _epochs(run: Path) -> list[dict]:
    log = run / "log.jsonl"
    if not log.exists():
        return []
    return [r for r in map(json.loads, log.read_text().splitlines()) if r["epoch"] >= 1]


def _summary(records: list[dict]) -> dict:
    """Per epoch: seconds, each stage's, clusters; the last evaluation's mAP and rank-1."""
    rows = [{"epoch": r["epoch"], "seconds": r["seconds"], **r.get("stage_seconds", {}),
             "clusters": r["clusters"], "outliers": r["outliers"],
             "trained": bool(r["losses"]), "loss": sum(r["losses"].values()) or None}
            for r in records]  # fmt: skip
    tested = [r["test"] for r in records if "test" in r]
    last = tested[-1] if tested else {}
    return {"epochs": rows, "mAP": last.get("mAP"), "rank1": last.get("rank1")}


def projection(epochs: list[dict], total: int, every: int) -> dict:
    """The recipe's wall time from measured epochs: `total` epochs of extract + cluster +
    memories + train (the mean after the first, which pays one-off warm-ups) and
    ceil(total / every) evaluations (the last one measured). Checkpoint writes excluded."""
    steady = epochs[1:] or epochs
    per_epoch = statistics.mean(sum(e.get(k, 0.0) for k in STAGE_KEYS[:4]) for e in steady)
    evaluate = next((e["evaluate"] for e in reversed(epochs) if e.get("evaluate", 0) > 0), 0.0)
    evaluations = math.ceil(total / every)
    seconds = total * per_epoch + evaluations * evaluate
    return {"epochs": total, "eval_every": every, "epoch_s": round(per_epoch, 2),
            "evaluate_s": round(evaluate, 2), "evaluations": evaluations,
            "seconds": round(seconds, 1), "hours": round(seconds / 3600, 3)}  # fmt: skip


def recipe(check) -> dict:
    """A few whole epochs of the Market recipe, timed per stage, and its 50-epoch projection."""
    from unreid.config import load_config

    s = check.sizes
    preset = load_config("cluster_contrast/market1501")
    run = check.work / "recipe"
    n = s.recipe_epochs
    cmd = [check.python, *_train_cmd(check, run, f"train.epochs={n}", f"eval.every={n}")]
    result = check.run("recipe", cmd)
    entry = {"status": _status([result], []), "wall_s": result["seconds"], **_summary(_epochs(run))}
    if entry["epochs"]:
        entry["projection"] = projection(entry["epochs"], preset.train.epochs, preset.eval.every)
        if not all(e["trained"] for e in entry["epochs"]):
            entry["note"] = "some epochs' clusterings were degenerate and trained no step"
    elif entry["status"] == "ok":
        entry["status"] = "failed"
    return entry


def torchrun(check) -> dict:
    """One short epoch in one process and under torchrun with 2 ranks on the same device."""
    s = check.sizes
    short = (f"train.iters={s.ddp_iters}", "train.epochs=1", "eval.every=1")
    runs = {
        "one_process": [check.python],
        "torchrun_2": [
            check.python,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
        ],
    }
    entry, results = {}, []
    for name, launcher in runs.items():
        if check.left() < MIN_PART_S[s.device]:
            entry[name] = {"status": "skipped"}
            continue
        run = check.work / name
        results.append(check.run(name, [*launcher, *_train_cmd(check, run, *short)]))
        entry[name] = {"status": _status(results[-1:], []), "wall_s": results[-1]["seconds"],
                       **_summary(_epochs(run))}  # fmt: skip
    skipped = [k for k, v in entry.items() if v["status"] == "skipped"]
    entry["status"] = _status(results, skipped)
    maps = [entry[k].get("mAP") for k in runs]
    if None not in maps:
        entry["mAP_difference"] = round(maps[1] - maps[0], 4)
    return entry


def pseudo_labels(check) -> dict:
    """device_knn.py: exact kNN backends at MSMT17 size and 1M x 256, then sharded on 2 ranks."""
    s = check.sizes
    entry, results, skipped = {"sets": {}}, [], []
    for name, args in s.knn_sets:
        if check.left() < MIN_PART_S[s.device]:
            skipped.append(name)
            continue
        script = [str(HERE / "device_knn.py"), *args, "--device", s.device]
        if name.endswith("_sharded"):
            script = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *script]
        result = check.run(f"knn-{name}", [check.python, *script])
        results.append(result)
        lines = check.json_lines(result)
        entry["sets"][name] = {"status": _status([result], []), "wall_s": result["seconds"],
                               "info": lines[0] if lines else {}, "rows": lines[1:]}  # fmt: skip
    entry["status"] = _status(results, skipped)
    if skipped:
        entry["note"] = f"not run, for time: {', '.join(skipped)}"
    return entry


STAGES = {"synth": synth, "throughput": throughput, "recipe": recipe, "torchrun": torchrun,
          "pseudo_labels": pseudo_labels}  # fmt: skip
