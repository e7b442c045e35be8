"""The GPU check: every GPU-scale figure of docs/gpu.md from one command, in about 9 minutes.

A GPU is lent here now and then, for minutes, starting bare; whoever gets one runs

    python benchmarks/gpu_check.py --out /tmp/gpu_check          # a GPU machine (docs/gpu.md)
    python benchmarks/gpu_check.py --out /tmp/gpu_check --tiny   # every stage on the CPU, toy size

and commits what it wrote: `gpu_check.json` (a `stages` object, one entry per stage) and
`gpu_check.md` (the same as tables), with each child's output under `logs/` (the synthetic
set and the run folders go to `--work`, default `<out>/work`, which git ignores). Stages:

1. `synth`: `unreid synth` of a Market-sized set (>= 12,936 training crops at 256x128,
   query and gallery), one worker per CPU;
2. `throughput`: train_throughput.py, baseline against all on, batch 256, for every
   backbone of the registry (ResNet-50 first), images/s and peak memory;
3. `recipe`: a few whole epochs of Cluster Contrast's Market recipe on that set (random
   init: no download on the machine), seconds per stage from log.jsonl and the 50-epoch
   projection;
4. `torchrun`: one short epoch under `torchrun --nproc_per_node=2` on the same device
   (UNREID_SHARE_GPUS=1: two ranks on one GPU talk over gloo), beside one process;
5. `pseudo_labels`: device_knn.py's exact kNN + Jaccard + DBSCAN at MSMT17 size
   (32,621 x 2048) and at one million 256-d features, then sharded over 2 processes.

Each stage has a budget (plus what earlier stages left of theirs) and each child a
timeout from it, never past the whole check's `--budget`; a stage starts only while the
check has time left, else it is recorded as skipped with a note. The JSON is
rewritten after every stage, so a check cut short keeps what it measured. One run per
figure: compare rows of the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from gpu_check_stages import STAGES  # noqa: E402
from gpu_check_table import markdown  # noqa: E402


def backbones_in_order() -> list[str]:
    """Every backbone of the registry, the recipes' own and the largest first: the ones a
    short GPU session should not miss come before those that only complete the table."""
    from unreid.models import list_backbones

    first = ["resnet50", "vit_base", "vit_small", "clip_vit_b16", "resnet50_ibn_a"]
    names = list_backbones()
    return [a for a in first if a in names] + [a for a in names if a not in first]


@dataclass(frozen=True)
class Sizes:
    """What each stage runs: the GPU check's sizes, or toy ones for the CPU (`--tiny`)."""

    device: str
    images: int  # training crops of the synthetic set (throughput takes exactly these)
    height: int
    width: int
    arch_groups: tuple[tuple[str, ...], ...]  # one train_throughput.py call per group
    throughput_args: tuple[str, ...]
    recipe_epochs: int
    recipe_args: tuple[str, ...]
    ddp_iters: int
    knn_sets: tuple[tuple[str, tuple[str, ...]], ...]  # (name, device_knn.py arguments)
    budgets: dict[str, float] = field(default_factory=dict)  # seconds per stage


GPU = Sizes(
    device="cuda", images=12936, height=256, width=128,
    arch_groups=tuple((arch,) for arch in backbones_in_order()),
    throughput_args=("--iters", "50", "--warmup", "10", "--eval-images", "1000"),
    recipe_epochs=2,
    recipe_args=("data.workers=8",),
    ddp_iters=30,
    knn_sets=(
        ("msmt17", ("--images", "32621", "--dim", "2048", "--methods", "torch", "torch_tf32",
                    "torch_bf16")),
        ("msmt17_sharded", ("--images", "32621", "--dim", "2048", "--methods", "torch_bf16")),
        ("one_million", ("--images", "1000000", "--dim", "256", "--noise", "1.0", "--methods",
                         "torch_bf16")),
    ),
    budgets={"synth": 40, "throughput": 140, "recipe": 130, "torchrun": 100, "pseudo_labels": 100},
)  # fmt: skip
TINY = Sizes(
    device="cpu", images=48, height=64, width=32,
    arch_groups=(("resnet18",),),
    throughput_args=("--iters", "3", "--warmup", "1", "--eval-images", "8", "--batch-size",
                     "16", "--num-instances", "4", "--bn-group-size", "8", "--workers", "0"),
    recipe_epochs=2,
    recipe_args=("model.arch=resnet18", "data.height=64", "data.width=32", "train.batch_size=16",
                 "train.num_instances=4", "train.bn_group_size=8", "train.iters=2",
                 "data.workers=0", "train.threads=1", "cluster.min_samples=2"),
    ddp_iters=2,
    knn_sets=(
        ("msmt17", ("--images", "400", "--dim", "32", "--methods", "torch", "torch_bf16", "--threads", "1")),
        ("msmt17_sharded", ("--images", "400", "--dim", "32", "--methods", "torch_bf16", "--threads", "1")),
        ("one_million", ("--images", "1500", "--dim", "16", "--noise", "1.0", "--methods",
                         "torch_bf16", "--threads", "1")),
    ),
    budgets={"synth": 60, "throughput": 90, "recipe": 90, "torchrun": 90, "pseudo_labels": 90},
)  # fmt: skip


@dataclass
class Check:
    """The check's folders, clock and children: what every stage function is given."""

    out: Path  # what is committed: gpu_check.json, gpu_check.md, logs/, throughput/
    work: Path  # what is not: the synthetic set (work/data) and the run folders
    sizes: Sizes
    deadline: float
    stage_deadline: float = 0.0
    python: str = sys.executable
    dry_run: bool = False  # record the commands (`commands`) instead of running them
    commands: list[list[str]] = field(default_factory=list)

    @property
    def data(self) -> Path:
        return self.work / "data"

    def left(self) -> float:
        """Seconds this stage may still use: its own budget and the check's, whichever ends first."""
        return min(self.stage_deadline, self.deadline) - time.monotonic()

    def env(self) -> dict[str, str]:
        """The children's: ranks may share the GPU; on the CPU (--tiny) one thread each."""
        env = dict(os.environ, UNREID_SHARE_GPUS="1", PYTHONUNBUFFERED="1")
        if self.sizes.device == "cpu":
            env["OMP_NUM_THREADS"] = "1"
        return env

    def run(self, name: str, cmd: list[str]) -> dict:
        """One child to its end or to the stage's time, its output in logs/<name>.log."""
        log = self.out / "logs" / f"{name}.log"
        if self.dry_run:
            self.commands.append(cmd)
            return {"rc": 0, "seconds": 0.0, "timed_out": False, "log": os.devnull}
        log.parent.mkdir(parents=True, exist_ok=True)
        timeout = self.left()
        started = time.monotonic()
        with open(log, "w") as f:
            f.write("$ " + " ".join(cmd) + "\n")
            f.flush()
            if timeout <= 1:
                return {"rc": None, "seconds": 0.0, "timed_out": True, "log": str(log)}
            child = subprocess.Popen(
                cmd, stdout=f, stderr=subprocess.STDOUT, env=self.env(),
                start_new_session=True, cwd=HERE.parent,
            )  # fmt: skip
            try:
                rc, timed_out = child.wait(timeout=timeout), False
            except subprocess.TimeoutExpired:  # the whole group: torchrun's ranks too
                os.killpg(child.pid, signal.SIGKILL)
                rc, timed_out = child.wait(), True
        took = round(time.monotonic() - started, 2)
        return {"rc": rc, "seconds": took, "timed_out": timed_out, "log": str(log)}

    def json_lines(self, result: dict) -> list[dict]:
        """The JSON objects a child printed one per line (device_knn.py's rows)."""
        rows = []
        for line in Path(result["log"]).read_text().splitlines():
            if line.startswith("{"):
                with contextlib.suppress(json.JSONDecodeError):  # a brace-led progress line
                    rows.append(json.loads(line))
        return rows


def environment(sizes: Sizes) -> dict:
    import torch

    info = {"python": sys.version.split()[0], "torch": torch.__version__, "cpus": os.cpu_count()}
    if Path("/dev/shm").is_dir():  # the decoded cache and loader workers live there
        info["shm_gb"] = round(shutil.disk_usage("/dev/shm").total / 1e9, 1)
    if sizes.device == "cuda" and torch.cuda.is_available():
        info["device"] = torch.cuda.get_device_name(0)
        info["gpu_memory_gb"] = round(torch.cuda.get_device_properties(0).total_memory / 1e9, 1)
    else:
        info["device"] = "CPU"
    try:
        info["commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        info["commit"] = ""
    return info


def planned_commands(sizes: Sizes, out: Path, work: str | None = None) -> list[list[str]]:
    """Every child command of a check, without running any (the stages as if each child
    succeeded and wrote nothing): what `--dry-run` prints and the tests parse."""
    check = Check(out, Path(work or out / "work"), sizes, math.inf, math.inf,
                  dry_run=True)  # fmt: skip
    for stage in STAGES.values():
        with contextlib.suppress(Exception):  # a stage reading outputs that were never made
            stage(check)
    return check.commands


def write(out: Path, report: dict) -> None:
    (out / "gpu_check.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "gpu_check.md").write_text(markdown(report))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", required=True, help="folder for gpu_check.json, .md and logs/")
    ap.add_argument("--tiny", action="store_true", help="every stage on the CPU at toy size")
    ap.add_argument("--work", help="synthetic set and run folders (default <out>/work)")
    ap.add_argument("--budget", type=float, default=530.0, help="seconds for the whole check")
    ap.add_argument("--stages", nargs="+", choices=list(STAGES), default=list(STAGES))
    ap.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    args = ap.parse_args(argv)
    sizes = TINY if args.tiny else GPU
    if args.dry_run:
        for cmd in planned_commands(sizes, Path(args.out), args.work):
            print(shlex.join(cmd))
        return 0
    if sizes.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            ap.error("no CUDA device here: run on a GPU machine, or use --tiny on a CPU")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    check = Check(out, Path(args.work or out / "work"), sizes,
                  time.monotonic() + args.budget)  # fmt: skip
    report = {**environment(sizes), "tiny": args.tiny, "budget_s": args.budget, "stages": {}}
    saved = 0.0  # seconds earlier stages left of their budgets: later ones may use them
    for name in args.stages:
        budget = sizes.budgets[name]
        left = check.deadline - time.monotonic()
        if left < min(budget, 30.0) * 0.5:  # too little time to measure anything
            report["stages"][name] = {
                "status": "skipped", "budget_s": budget,
                "note": f"{max(left, 0):.0f} s of the check's {args.budget:.0f} s were left "
                        "when it was due (earlier stages ran long)",
            }  # fmt: skip
        else:
            check.stage_deadline = time.monotonic() + budget + saved
            started = time.monotonic()
            print(f"== {name} (budget {budget:.0f} s, {left:.0f} s left)", flush=True)
            try:
                entry = STAGES[name](check)
            except Exception as e:  # noqa: BLE001 - a broken stage must not lose the others
                entry = {"status": "failed", "note": f"{type(e).__name__}: {e}"}
            entry["seconds"] = round(time.monotonic() - started, 2)
            entry["budget_s"] = budget
            report["stages"][name] = entry
            saved = max(0.0, saved + budget - entry["seconds"])
            print(f"   {entry['status']} in {entry['seconds']:.0f} s", flush=True)
        write(out, report)
    print(markdown(report))
    return 0 if all(s["status"] in ("ok", "partial") for s in report["stages"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
