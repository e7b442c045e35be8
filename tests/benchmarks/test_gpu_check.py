"""benchmarks/gpu_check.py: every stage at toy size on the CPU, so the GPU check cannot rot
between the rare sessions that have a GPU; its budgets, timeouts and projection."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time

import pytest
from bench_scripts import load_script

check_mod = load_script("gpu_check.py", "bench_gpu_check")
stages = sys.modules["gpu_check_stages"]
STAGES = ["synth", "throughput", "recipe", "torchrun", "pseudo_labels"]


@pytest.mark.slow
def test_tiny_runs_every_stage_and_writes_their_figures(tmp_path) -> None:
    assert check_mod.main(["--tiny", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    st = report["stages"]
    assert list(st) == STAGES and {s["status"] for s in st.values()} == {"ok"}, st
    assert report["tiny"] is True and report["device"] == "CPU"
    # 1. the set every later stage reads
    assert st["synth"]["bounding_box_train"] >= check_mod.TINY.images > 0
    # 2. baseline against all on, per arch, the speed-up from the two rows
    for arch in check_mod.TINY.arch_groups[0]:
        per = st["throughput"]["archs"][arch]
        base, on = per["baseline"], per["all on"]
        assert base["train img/s"] > 0 and on["peak GB"] > 0
        assert per["train_speedup"] == round(on["train img/s"] / base["train img/s"], 3)
    assert st["throughput"]["setting"]["train_images"] == check_mod.TINY.images
    # 3. whole epochs timed per stage, and the 50-epoch projection from them
    epochs = st["recipe"]["epochs"]
    assert [e["epoch"] for e in epochs] == [1, 2] and all(e["trained"] for e in epochs)
    assert all(e[k] >= 0 for e in epochs for k in stages.STAGE_KEYS)
    steady = sum(epochs[1][k] for k in ("extract", "cluster", "memories", "train"))
    p = st["recipe"]["projection"]
    assert (p["epochs"], p["eval_every"], p["evaluations"]) == (50, 10, 5)
    assert p["seconds"] == pytest.approx(50 * steady + 5 * epochs[1]["evaluate"], abs=0.2)
    assert 0 <= st["recipe"]["mAP"] <= 1
    # 4. one process and two ranks: the same clustering of the same untrained features
    one, two = st["torchrun"]["one_process"], st["torchrun"]["torchrun_2"]
    assert one["epochs"][0]["clusters"] == two["epochs"][0]["clusters"] > 0
    assert st["torchrun"]["mAP_difference"] == round(two["mAP"] - one["mAP"], 4)
    # 5. exact device kNN: bf16 lists equal to fp32; sharded labels equal to one process
    sets = st["pseudo_labels"]["sets"]
    assert set(sets) == {"msmt17", "msmt17_sharded", "one_million"}
    bf16 = sets["msmt17"]["rows"][1]
    assert (bf16["method"], bf16["rows_differing"], bf16["labels_equal"]) == ("torch_bf16", 0, True)
    (sharded,) = sets["msmt17_sharded"]["rows"]
    assert sharded["world"] == 2 and sharded["labels_equal"] is True
    assert sets["one_million"]["info"]["n"] == 1500 and sets["one_million"]["rows"]
    md = (tmp_path / "gpu_check.md").read_text()
    assert all(f"| {name} | ok |" in md for name in STAGES)
    assert "## throughput" in md and "Projected: 50 epochs" in md


def test_a_check_out_of_time_skips_every_stage_with_a_note_and_still_writes(tmp_path) -> None:
    assert check_mod.main(["--tiny", "--out", str(tmp_path), "--budget", "0"]) == 1
    st = json.loads((tmp_path / "gpu_check.json").read_text())["stages"]
    assert list(st) == STAGES
    for entry in st.values():
        assert entry["status"] == "skipped" and "were left when it was due" in entry["note"]
    assert "| recipe | skipped |" in (tmp_path / "gpu_check.md").read_text()


def test_a_child_past_its_stage_time_is_killed_with_its_group(tmp_path) -> None:
    check = check_mod.Check(tmp_path, tmp_path, check_mod.TINY, time.monotonic() + 60)
    check.stage_deadline = time.monotonic() + 2.0
    started = time.monotonic()
    # a shell that starts a grandchild: both must go (torchrun's ranks are grandchildren)
    result = check.run("sleepy", ["bash", "-c", "sleep 31.25 & sleep 31.25"])
    assert result["timed_out"] is True and 1.5 < time.monotonic() - started < 10
    left = subprocess.run(["pgrep", "-f", "sleep 31.25"], capture_output=True, text=True)
    assert left.stdout == ""
    assert stages.status_of([result]) == "timed_out"
    assert stages.status_of([{"timed_out": False, "rc": 1}]) == "failed"


def test_the_projection_is_the_steady_epochs_mean_plus_each_evaluation() -> None:
    epochs = [
        {"extract": 9.0, "cluster": 9.0, "memories": 1.0, "train": 50.0, "evaluate": 0.0},
        {"extract": 2.0, "cluster": 3.0, "memories": 0.5, "train": 20.0, "evaluate": 0.0},
        {"extract": 2.0, "cluster": 5.0, "memories": 0.5, "train": 22.0, "evaluate": 12.0},
    ]
    p = stages.projection(epochs, total=50, every=10)
    per_epoch = (25.5 + 29.5) / 2  # the first epoch's warm-ups left out
    assert p["epoch_s"] == per_epoch and p["evaluations"] == 5 and p["evaluate_s"] == 12.0
    assert p["seconds"] == pytest.approx(50 * per_epoch + 5 * 12.0)
    assert stages.projection(epochs[:1], 7, 3)["evaluations"] == math.ceil(7 / 3)


def test_without_a_gpu_the_full_check_refuses_and_names_tiny(tmp_path, capsys) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is here")
    with pytest.raises(SystemExit):
        check_mod.main(["--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert "no CUDA device here" in err and "--tiny" in err
    assert not (tmp_path / "gpu_check.json").exists()


def test_every_command_of_the_full_check_parses_and_its_runs_configs_load(tmp_path) -> None:
    """The full check's children run only on a GPU; here each command line goes through the
    parser of what it launches, and each training run's overrides through load_config."""
    from unreid.cli import build_parser
    from unreid.config import load_config
    from unreid.models import list_backbones

    commands = check_mod.planned_commands(check_mod.GPU, tmp_path)
    throughput = sys.modules["train_throughput"]  # imported by the planning
    knn = load_script("device_knn.py", "bench_device_knn_parse")
    seen, archs, sizes = [], set(), set()
    for cmd in commands:
        assert cmd[0] == sys.executable
        rest = cmd[1:]
        if rest[:2] == ["-m", "torch.distributed.run"]:
            assert rest[2:4] == ["--standalone", "--nproc_per_node=2"]
            seen.append("torchrun")
            rest = rest[4:]
        if rest[:2] == ["-m", "unreid"]:
            args, extra = build_parser().parse_known_args(rest[2:])
            seen.append(args.command)
            if args.command == "train":
                cfg = load_config(args.config, [*args.overrides, *extra])
                assert (cfg.train.device, cfg.train.batch_size, cfg.data.dataset) == (
                    "cuda", 256, "market1501")  # fmt: skip
                assert args.no_report and cfg.data.device_augment
        elif rest[0].endswith("train_throughput.py"):
            a = throughput.parse(rest[1:])
            assert (a.device, a.images, a.batch_size, a.height) == ("cuda", 12936, 256, 256)
            archs.update(a.arch)
            seen.append("throughput")
        else:
            assert rest[0].endswith("device_knn.py"), cmd
            a = knn.parse(rest[1:])
            assert a.device == "cuda"
            sizes.add((a.images, a.dim))
            seen.append("knn")
    assert archs == set(list_backbones())  # every backbone the project has
    assert sizes == {(32621, 2048), (1_000_000, 256)}
    assert sorted(seen) == sorted(["synth", *["throughput"] * len(archs), "train", "train",
                                   "torchrun", "train", "knn", "torchrun", "knn", "knn"])  # fmt: skip
