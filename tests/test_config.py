from pathlib import Path

import pytest

from unreid.config import (
    Config,
    ConfigError,
    config_from_dict,
    dump_config,
    list_presets,
    load_config,
)


def test_defaults_validate():
    cfg = load_config()
    assert isinstance(cfg, Config)
    assert cfg.train.batch_size == 256 and cfg.cluster.k1 == 30


@pytest.mark.parametrize("preset", list_presets())
def test_every_preset_loads(preset):
    cfg = load_config(preset)
    expected = preset.split("/")[0] if "/" in preset else "cluster_contrast"
    assert cfg.method == expected


def test_reference_presets_carry_readme_settings():
    market = load_config("cluster_contrast/market1501")
    msmt = load_config("cluster_contrast/msmt17")
    assert (market.train.batch_size, market.train.num_instances) == (256, 16)
    assert (market.cluster.eps, market.cluster_contrast.momentum) == (0.6, 0.1)
    assert market.cluster_contrast.temperature == 0.05
    assert (market.train.epochs, market.train.iters) == (50, 200)
    assert msmt.train.iters == 400 and msmt.data.dataset == "msmt17"
    # base chain: msmt17 inherits everything else from market1501
    assert msmt.cluster.eps == 0.6 and msmt.model.arch == "resnet50"


def test_dotted_overrides_and_int_widening():
    cfg = load_config("demo", ["train.epochs=3", "train.lr=1", "model.arch=resnet50"])
    assert cfg.train.epochs == 3
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)
    assert cfg.model.arch == "resnet50"


def test_unknown_key_names_the_key_and_origin(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"train\.epoch'.*valid here"):
        load_config(None, ["train.epoch=3"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("cluster:\n  epsilon: 0.5\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*cluster\.epsilon"):
        load_config(str(bad))


def test_wrong_types_rejected():
    with pytest.raises(ConfigError, match="train.epochs expects int"):
        load_config(None, ["train.epochs=2.5"])
    with pytest.raises(ConfigError, match="expects bool"):
        load_config(None, ["train.ground_truth=maybe"])
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(None, ["train=3"])


def test_cross_field_validation():
    with pytest.raises(ConfigError, match="multiple of train.num_instances"):
        load_config(None, ["train.batch_size=100", "train.num_instances=16"])
    with pytest.raises(ConfigError, match=r"eval\.select_best_on='best': must be one of val"):
        load_config(None, ["eval.select_best_on=best"])
    with pytest.raises(ConfigError, match="must be < 1 with the sparse"):
        load_config(None, ["cluster.eps=1.0"])
    assert load_config(None, ["cluster.eps=1.0", "cluster.jaccard_impl=dense"]).cluster.eps == 1


def test_missing_preset_lists_presets():
    with pytest.raises(ConfigError, match="demo"):
        load_config("no_such_preset")


def test_round_trip_through_yaml(tmp_path: Path):
    cfg = load_config("demo", ["train.epochs=2"])
    dump_config(cfg, tmp_path / "c.yaml")
    again = load_config(str(tmp_path / "c.yaml"))
    assert again == cfg
    assert config_from_dict(cfg.to_dict()) == cfg


def test_hhcl_presets_follow_the_paper_and_name_the_released_differences():
    market = load_config("hhcl/market1501")
    assert market.method == "hhcl" and market.cluster.eps == 0.45
    assert (market.train.epochs, market.train.step_size, market.hhcl.mu) == (50, 20, 0.5)
    assert load_config("hhcl/msmt17").cluster.eps == 0.7
    assert load_config("hhcl/msmt17").train.iters == 300
    released = load_config("hhcl/market1501_released")
    assert (released.hhcl.form, released.train.epochs) == ("released", 60)


def test_table1_variant_presets_carry_the_published_settings():
    for name in ("market1501", "msmt17"):
        assert load_config(f"cluster_contrast/{name}_gem").model.pooling == "gem"
        cap = load_config(f"cap/{name}")
        c = cap.cap
        assert (c.temperature, c.momentum, c.inter_start_epoch, c.inter_weight) == (
            0.07,
            0.2,
            5,
            0.5,
        )
        assert (c.hard_negatives, c.inter_positives, c.cluster_weight) == (50, "all", 1.0)
        assert cap.cap.memory.temperature == 0.05 and cap.data.dataset == name
    only = load_config("cap/market1501_cap_only")
    assert only.cap.cluster_weight == 0 and (only.cluster.k1, only.cluster.eps) == (20, 0.5)
    m2m = load_config("spcl_uda/msmt17_to_market1501")
    m2s = load_config("spcl_uda/market1501_to_msmt17")
    assert (m2m.data.source, m2m.data.dataset) == ("msmt17", "market1501")
    assert (m2s.data.source, m2s.data.dataset) == ("market1501", "msmt17")
    for cfg in (m2m, m2s):
        assert cfg.model.dsbn and cfg.spcl_uda.memory.momentum == 0.2
        assert (cfg.train.batch_size, cfg.train.num_instances, cfg.train.iters) == (128, 4, 400)
    veri = load_config("cluster_contrast/veri")
    assert (veri.data.dataset, veri.data.height, veri.data.width) == ("veri", 224, 224)


# ----------------------------------------------------------- checked at load time
def test_misspelt_method_is_rejected_with_the_allowed_values():
    with pytest.raises(
        ConfigError, match=r"method='hhlc': must be one of .*cluster_contrast.*hhcl"
    ):
        load_config("hhcl/market1501", ["method=hhlc"])


def test_section_of_an_inactive_method_is_rejected(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"section 'hhcl'.*method='cluster_contrast'"):
        load_config(None, ["hhcl.mu=0.3"])
    stray = tmp_path / "stray.yaml"
    stray.write_text("method: hhcl\ngcl_scl:\n  k: 3\n")
    with pytest.raises(ConfigError, match=r"stray\.yaml: section 'gcl_scl'.*method='hhcl'"):
        load_config(str(stray))


@pytest.mark.parametrize(
    ("override", "pattern"),
    [
        (
            "hhcl.form=relased",
            r"command line: hhcl\.form='relased': must be one of paper, released",
        ),
        ("hhcl.mu=1.5", r"hhcl\.mu=1\.5: must be in \[0\.0, 1\.0\]"),
        ("hhcl.temperature=0", r"hhcl\.temperature=0\.0: must be > 0"),
    ],
)
def test_bad_value_in_the_active_method_section_names_key_value_and_range(override, pattern):
    with pytest.raises(ConfigError, match=pattern):
        load_config("hhcl/market1501", [override])


def test_every_method_section_rejects_a_bad_choice_at_load_time():
    cases = {
        "cluster_contrast": "cluster_contrast.memory_update=hardest",
        "cap": "cap.inter_positives=some",
        "spcl_uda": "spcl_uda.source_centroids=keep",
        "spcl": "spcl.cluster_on=fresh",
        "gcl_scl": "gcl_scl.update=top",
        "csa_hps": "csa_hps.init=attention",
        "hhcl": "hhcl.form=both",
        "ice": "ice.form=released",
    }
    from unreid.methods import list_methods

    assert sorted(cases) == list_methods()
    for method, override in cases.items():
        source = ["data.source=market1501"] if method == "spcl_uda" else []
        with pytest.raises(ConfigError, match=override.replace(".", r"\.").split("=")[0]):
            load_config(None, [f"method={method}", *source, override])


def test_nested_memory_block_is_checked_with_its_full_key():
    with pytest.raises(ConfigError, match=r"cap\.memory\.momentum=1\.0: must be in"):
        load_config("cap/demo", ["cap.memory.momentum=1.0"])


def test_keys_the_mode_ignores_are_reported(caplog):
    with caplog.at_level("WARNING", logger="unreid"):
        load_config("hhcl/market1501_released", ["hhcl.mu=0.3", "cluster.infomap_k=9"])
    text = caplog.text
    assert "hhcl.mu=0.3 is ignored (hhcl.form=released)" in text
    assert "cluster.infomap_k=9 is ignored (cluster.method=dbscan)" in text


def test_saved_config_holds_only_what_applies(tmp_path: Path):
    cfg = load_config("hhcl/market1501_released")
    dump_config(cfg, tmp_path / "c.yaml")
    import yaml

    saved = yaml.safe_load((tmp_path / "c.yaml").read_text())
    assert "cluster_contrast" not in saved and "gcl_scl" not in saved and "hhcl" in saved
    assert "mu" not in saved["hhcl"] and "infomap_k" not in saved["cluster"]
    assert load_config(str(tmp_path / "c.yaml")) == cfg


def test_yaml_1_1_exponent_floats_and_syntax_errors(tmp_path: Path):
    assert load_config(None, ["train.lr=1e-4"]).train.lr == pytest.approx(1e-4)
    broken = tmp_path / "broken.yaml"
    broken.write_text("train:\n  lr: [1e-4\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml: line \d+, column \d+: not valid YAML"):
        load_config(str(broken))


def _flat(data: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _defaults(method: str) -> dict:
    import dataclasses

    cfg = Config(method=method)
    tree = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "method_cfg"}
    tree[method] = dataclasses.asdict(cfg.method_cfg)
    return _flat(tree)


@pytest.mark.parametrize("preset", list_presets())
def test_presets_hold_only_what_differs(preset):
    """Every key a preset file sets changes what the defaults and its `base:` chain give."""
    from unreid.config import preset_chain, resolve_preset

    chain = preset_chain(resolve_preset(preset))
    method = load_config(preset).method
    reference = {**_defaults(method), "method": "cluster_contrast"}
    for data, _ in chain[:-1]:
        reference.update(_flat(data))
    for key, value in _flat(chain[-1][0]).items():
        if key != "name":
            assert reference.get(key, object()) != value, (
                f"{preset}: {key}={value!r} is the default"
            )


def test_cap_alone_presets_carry_the_authors_recipe():
    only = load_config("cap/market1501_cap_only")
    t = only.train
    assert (t.warmup_epochs, t.warmup_factor, t.step_size, t.gamma, t.epochs) == (
        10,
        0.01,
        20,
        0.1,
        50,
    )
    assert (t.sampler, t.epoch_length, t.batch_size, t.num_instances) == (
        "proxy_balanced",
        "one_pass",
        32,
        4,
    )
    assert "train.iters" in only.ignored()  # one pass per epoch, not a fixed count
    demo = load_config("cap/demo_cap_only")
    assert demo.cap.cluster_weight == 0 and demo.cap.inter_start_epoch == 2
    assert (demo.train.sampler, demo.train.warmup_epochs, demo.train.warmup_factor) == (
        "proxy_balanced",
        2,
        0.01,
    )
    assert (demo.train.epoch_length, demo.train.iters, demo.train.epochs) == ("iters", 30, 8)


@pytest.mark.parametrize(
    ("override", "pattern"),
    [
        (
            "train.sampler=random",
            r"train\.sampler='random': must be one of pk, pk_stream, proxy_balanced",
        ),
        ("train.warmup_epochs=1.5", r"train\.warmup_epochs expects int"),
        (
            "train.epoch_length=epochs",
            r"train\.epoch_length='epochs': must be one of iters, one_pass",
        ),
        ("train.warmup_epochs=-2", r"train\.warmup_epochs=-2: must be >= 0"),
        ("train.warmup_factor=0", r"train\.warmup_factor=0\.0: must be in \(0\.0, 1\.0\]"),
        ("train.optimizer=adamw", r"train\.optimizer='adamw': must be one of adam, sgd"),
        ("train.scheduler=poly", r"train\.scheduler='poly': must be one of step, cosine"),
        (
            "train.no_weight_decay=bias",
            r"train\.no_weight_decay='bias': must be one of none, norm_bias_tokens",
        ),
        ("train.momentum=1", r"train\.momentum=1\.0: must be in \[0\.0, 1\.0\)"),
        ("train.min_lr_factor=-0.1", r"train\.min_lr_factor=-0\.1: must be in \[0\.0, 1\.0\]"),
    ],
)
def test_bad_schedule_and_sampler_values_name_key_expected_and_found(override, pattern):
    with pytest.raises(ConfigError, match=pattern):
        load_config(None, [override])


def test_schedule_and_epoch_keys_ignored_by_the_mode(caplog, tmp_path: Path):
    with caplog.at_level("WARNING", logger="unreid"):
        cfg = load_config(None, ["train.warmup_factor=0.1", "train.epoch_length=one_pass",
                                 "train.iters=50"])  # fmt: skip
    assert "train.warmup_factor=0.1 is ignored (train.warmup_epochs=0)" in caplog.text
    assert "train.iters=50 is ignored (train.epoch_length=one_pass)" in caplog.text
    saved = cfg.to_dict()["train"]
    assert "iters" not in saved and "warmup_factor" not in saved
    assert saved["epoch_length"] == "one_pass" and saved["warmup_epochs"] == 0


def test_optimizer_and_schedule_keys_ignored_by_the_mode(caplog):
    with caplog.at_level("WARNING", logger="unreid"):
        cfg = load_config(None, ["train.momentum=0.8", "train.scheduler=cosine",
                                 "train.step_size=30"])  # fmt: skip
    assert "train.momentum=0.8 is ignored (train.optimizer=adam)" in caplog.text
    assert "train.step_size=30 is ignored (train.scheduler=cosine)" in caplog.text
    saved = cfg.to_dict()["train"]
    assert {"momentum", "step_size", "gamma"}.isdisjoint(saved)
    assert saved["scheduler"] == "cosine" and saved["min_lr_factor"] == 0.0
    assert saved["optimizer"] == "adam" and saved["no_weight_decay"] == "none"
    sgd = load_config(None, ["train.optimizer=sgd", "train.no_weight_decay=norm_bias_tokens"])
    saved = sgd.to_dict()["train"]
    assert saved["momentum"] == 0.9 and saved["no_weight_decay"] == "norm_bias_tokens"
    assert "min_lr_factor" not in saved and saved["step_size"] == 20


def test_reference_presets_keep_the_4_gpu_batchnorm_statistics():
    for preset in ("cluster_contrast/market1501", "hhcl/market1501", "cap/market1501",
                   "csa_hps/market1501", "cluster_contrast/msmt17"):  # fmt: skip
        assert load_config(preset).train.bn_group_size == 64, preset
    assert load_config("spcl_uda/msmt17_to_market1501").train.bn_group_size == 16
    assert load_config("cap/market1501_cap_only").train.bn_group_size == 0
    assert load_config("demo").train.bn_group_size == 0
    with pytest.raises(ConfigError, match=r"train\.bn_group_size=6: must hold whole identities"):
        load_config("demo", ["train.bn_group_size=6"])
