"""benchmarks/device_knn.py: the side-by-side rows it prints, on a tiny input."""

from __future__ import annotations

import argparse

import torch
from bench_scripts import load_script

bench = load_script("device_knn.py", "bench_device_knn")


def test_one_process_rows_compare_each_method_with_the_first() -> None:
    x, _ = bench.synthetic_features(300, 16, 0, 1.0)
    args = argparse.Namespace(methods=["torch", "torch_bf16"], k1=10, k2=4, eps=0.6)
    rows = bench.one_process(args, torch.from_numpy(x), torch.device("cpu"))
    assert [r["method"] for r in rows] == ["torch", "torch_bf16"]
    assert rows[1]["rows_differing"] == 0 and rows[1]["labels_equal"] is True
    assert rows[1]["knn_speedup"] > 0 and rows[0]["clusters"] == rows[1]["clusters"] > 0
