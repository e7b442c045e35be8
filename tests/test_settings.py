"""The core sections check their own values and name the keys their mode ignores."""

from __future__ import annotations

import pytest

from unreid.errors import SettingError
from unreid.settings import ClusterConfig, DataConfig, EvalConfig, ModelConfig, TrainConfig


@pytest.mark.parametrize(
    ("cls", "kwargs", "key"),
    [
        (DataConfig, {"holdout_ids": -1}, "holdout_ids"),
        (ModelConfig, {"last_stride": 3}, "last_stride"),
        (ClusterConfig, {"eps": 0.0}, "eps"),
        (ClusterConfig, {"eps": 1.0}, "eps"),
        (ClusterConfig, {"knn": "annoy"}, "knn"),
        (ClusterConfig, {"k1": 0}, "k1"),
        (TrainConfig, {"batch_size": 0}, "batch_size"),
        (TrainConfig, {"num_instances": 0}, "num_instances"),
        (TrainConfig, {"batch_size": 10, "num_instances": 4}, "batch_size"),
        (TrainConfig, {"lr": -1.0}, "lr"),
        (TrainConfig, {"step_size": 0}, "step_size"),
        (TrainConfig, {"warmup_epochs": -1}, "warmup_epochs"),
        (TrainConfig, {"warmup_factor": 0.0}, "warmup_factor"),
        (TrainConfig, {"warmup_factor": 1.5}, "warmup_factor"),
        (TrainConfig, {"sampler": "random"}, "sampler"),
        (TrainConfig, {"epoch_length": "epochs"}, "epoch_length"),
        (TrainConfig, {"optimizer": "adamw"}, "optimizer"),
        (TrainConfig, {"momentum": 1.0}, "momentum"),
        (TrainConfig, {"scheduler": "poly"}, "scheduler"),
        (TrainConfig, {"min_lr_factor": 1.5}, "min_lr_factor"),
        (TrainConfig, {"no_weight_decay": "bias"}, "no_weight_decay"),
        (EvalConfig, {"select_best_on": "best"}, "select_best_on"),
    ],
)
def test_bad_values_name_their_key(cls, kwargs, key):
    with pytest.raises(SettingError) as err:
        cls(**kwargs)
    assert err.value.key == key


def test_defaults_are_valid_and_dense_jaccard_allows_eps_one():
    for cls in (DataConfig, ModelConfig, ClusterConfig, TrainConfig, EvalConfig):
        cls()
    assert ClusterConfig(eps=1.0, jaccard_impl="dense").eps == 1.0


def test_cluster_keys_ignored_by_the_mode():
    dbscan = ClusterConfig().ignored()  # knn=auto: IVF above AUTO_EXACT_BELOW images
    assert "infomap_k" in dbscan and not {"k1", "ivf_nlist", "ivf_nprobe"} & set(dbscan)
    assert {"ivf_nlist", "ivf_nprobe"} <= set(ClusterConfig(knn="torch").ignored())
    infomap = ClusterConfig(method="infomap").ignored()
    assert {"k1", "eps", "knn"} <= set(infomap) and "infomap_k" not in infomap
    assert "ivf_nprobe" not in ClusterConfig(knn="ivf").ignored()
    assert "ivf_nprobe" not in ClusterConfig(knn="ivf_whitened").ignored()
    assert "knn_refine" not in ClusterConfig(knn="hnsw").ignored()
    assert ClusterConfig(knn="torch_bf16").ignored()["knn_refine"] == "cluster.knn=torch_bf16"
    assert "knn_refine" in ClusterConfig(method="infomap").ignored()
    with pytest.raises(SettingError, match="knn_refine"):
        ClusterConfig(knn_refine=-1)
    assert DataConfig().ignored() == {"source_root": "no data.source is set"}


def test_train_keys_ignored_by_the_mode():
    assert set(TrainConfig().ignored()) == {
        "bn_running_stats",
        "warmup_factor",
        "momentum",
        "min_lr_factor",
    }
    on = TrainConfig(warmup_epochs=10, bn_group_size=64, epoch_length="one_pass", optimizer="sgd")
    assert on.ignored() == {
        "iters": "train.epoch_length=one_pass",
        "min_lr_factor": "train.scheduler=step",
    }
    cosine = TrainConfig(scheduler="cosine", warmup_epochs=10, optimizer="sgd").ignored()
    assert cosine == {
        "bn_running_stats": "train.bn_group_size=0",
        "step_size": "train.scheduler=cosine",
        "gamma": "train.scheduler=cosine",
    }
    assert TrainConfig().ignored()["momentum"] == "train.optimizer=adam"


def test_data_roots_made_absolute_as_the_loaders_read_them(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    d = DataConfig(root="crops", source_root="~/market").with_absolute_roots()
    assert (d.root, d.source_root) == (str(tmp_path / "crops"), str(tmp_path / "home" / "market"))
    assert DataConfig(root="/data/x").with_absolute_roots().root == "/data/x"
    assert DataConfig(root="crops").with_absolute_roots().source_root == ""  # none stays none
