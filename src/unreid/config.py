"""Typed run configuration: dataclass defaults, YAML presets, dotted CLI overrides.

A preset holds only what differs from the defaults below, so a reader sees at a
glance what a recipe changes. Every key is checked against the dataclasses:
an unknown or mistyped key is an error naming the key and the file it came
from, never a silently ignored setting.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PRESET_DIR = Path(__file__).parent / "configs"


class ConfigError(ValueError):
    """A configuration key or value is wrong; the message says which and why."""


@dataclass
class DataConfig:
    dataset: str = "market1501"
    root: str = "data"
    height: int = 256
    width: int = 128
    workers: int = 4
    # Identities held out of the (labelled) training split to pick `best.pth`
    # without looking at the test set; 0 = no validation split.
    holdout_ids: int = 0
    # Decode the training images once and keep them in memory (small sets only).
    cache_images: bool = False
    # Unsupervised domain adaptation (method=spcl_uda): a labelled source dataset
    # trained beside the unlabelled target `dataset`; "" = none. Its root
    # defaults to `root`.
    source: str = ""
    source_root: str = ""


@dataclass
class ModelConfig:
    arch: str = "resnet50"
    # "imagenet" (torchvision download / cache), "none" (random init) or a file path.
    pretrained: str = "imagenet"
    pooling: str = "avg"
    last_stride: int = 1
    # Domain-specific BatchNorm (SpCL's DSBN): every BN layer keeps source and
    # target statistics apart; evaluation uses the target ones. UDA only.
    dsbn: bool = False


@dataclass
class ClusterConfig:
    # "dbscan" on the k-reciprocal Jaccard distance, or "infomap" on a kNN similarity graph.
    method: str = "dbscan"
    k1: int = 30
    k2: int = 6
    eps: float = 0.6
    min_samples: int = 4
    # "paper" (re-ranking paper's sets) or "cluster_contrast" (reference code's off-by-one).
    jaccard_variant: str = "paper"
    # "sparse" (O(N·k) memory, same labels) or "dense" (the N×N reference).
    jaccard_impl: str = "sparse"
    # kNN for the sparse path: "torch" (exact, GPU when the features are on one),
    # "exact" (faiss flat index), "ivf" or "hnsw" (approximate, for very large N).
    knn: str = "torch"
    # IVF cells (0 = 4 sqrt(N)) and cells scanned per query, for knn="ivf".
    ivf_nlist: int = 0
    ivf_nprobe: int = 8
    # InfoMap (Cluster Contrast README recipe): kNN k (self included), edge similarity
    # threshold, and the smallest cluster kept (clusters of <= 4 images become outliers).
    infomap_k: int = 15
    infomap_min_sim: float = 0.5
    infomap_min_size: int = 5


@dataclass
class ClusterContrastConfig:
    # "momentum" (every instance, in batch order) or "hard" (least similar instance per cluster).
    memory_update: str = "momentum"
    # Weight of the OLD bank row: M <- m*M + (1-m)*x (reference convention, m = 0.1).
    momentum: float = 0.1
    temperature: float = 0.05
    label_smoothing: float = 0.0


@dataclass
class HHCLConfig:
    # L = mu * L_cls + (1 - mu) * L_ins (Eq. 2); any mu in [0, 1].
    mu: float = 0.5
    # "paper": centroid memory (batch-mean update, Eq. 4) + (C, K, D) hard instance memory.
    # "released": the authors' code (CMhybrid): hard + mean centroids, 0.5/0.25 weights.
    form: str = "paper"
    momentum: float = 0.1
    temperature: float = 0.05
    instance_temperature: float = 0.05
    slots: int = 0  # instance slots per cluster; 0 = train.num_instances
    label_smoothing: float = 0.0


@dataclass
class GCLSCLConfig:
    """GCL + SCL ("Mind your clever neighbours"); see methods/gcl_scl.py for each choice."""

    # SCL memory update: "topk" (the k least similar instances, in order, Eq. 6),
    # "random" (one random instance) or "average" (batch mean; "SCL off").
    update: str = "topk"
    k: int = 2
    # Weight of the OLD row (Eq. 6's eta): 0.2 in the paper's implementation details
    # (its sensitivity study prefers 0.1).
    momentum: float = 0.2
    temperature: float = 0.05
    # Loss instances: "selected" (Eq. 7: those the update policy picks; all of them
    # for "average") or "all" (every batch instance, the ClusterNCE form).
    loss: str = "selected"
    # Eq. 8: L = L_scl(x) + lam * L_scl(x_hat).
    lam: float = 0.5
    # Cluster refinement (cluster GCL features of ordered graphs) and noise
    # suppression (the batch as one graph, trains the GCL module).
    cr: bool = True
    ns: bool = True
    graph_size: int = 16
    gcl_temperature: float = 5.0
    # Order of the training set for CR graphs: "name" (paper; leaks identity in
    # Market-style names), "camera_frame" or "random" (identity-free).
    order: str = "name"
    # Unit length of [v, v~]: "joint" (normalise the concatenation) or "halves".
    concat_norm: str = "joint"


@dataclass
class CSAHPSConfig:
    """CSA + HPS on Cluster Contrast; see methods/csa_hps.py for the design."""

    # Prototype initialisation: "csa" (self-attention aggregation of each cluster)
    # or "mean" (Cluster Contrast's normalised mean; "CSA off").
    init: str = "csa"
    # Memory update per cluster in the batch: "hps" (its most dispersed instance by
    # the SAA module), "hard" (least similar to the row) or "mean" (momentum towards
    # the batch mean; "HPS off").
    update: str = "hps"
    momentum: float = 0.1
    temperature: float = 0.05
    heads: int = 8
    attention_temperature: float = 0.1
    # Weight of the aggregation loss that trains SAA: each batch cluster group's
    # aggregated prototype, ClusterNCE against the memory.
    aggregation_weight: float = 1.0


@dataclass
class CAPConfig:
    """Camera-aware proxies (Wang et al., AAAI 2021) on Cluster Contrast; see methods/cap.py.

    The cluster-level ClusterNCE term takes its settings from `cluster_contrast`.
    """

    temperature: float = 0.07
    # Proxy memory momentum (weight of the OLD row, as everywhere here).
    momentum: float = 0.2
    intra_weight: float = 1.0
    inter_weight: float = 0.5
    # 0-based epoch from which the inter-camera loss is on (reference: epoch >= 5).
    inter_start_epoch: int = 5
    hard_negatives: int = 50
    # Inter-camera positives: "other_cameras" (the cluster's proxies in cameras
    # other than the sample's) or "all" (every proxy of the cluster, the sample's
    # own camera included: the reference code).
    inter_positives: str = "other_cameras"
    # Weight of the cluster-level ClusterNCE term; 0 = CAP alone (no cluster memory).
    cluster_weight: float = 1.0


@dataclass
class SpCLUDAConfig:
    """SpCL + Cluster Contrast domain adaptation; memory settings from `cluster_contrast`."""

    # Source class rows: "carry" (extracted once, then moved by momentum updates
    # across epochs: SpCL) or "refresh" (re-extracted from the source set each epoch).
    source_centroids: str = "carry"


@dataclass
class TrainConfig:
    epochs: int = 50
    iters: int = 200
    batch_size: int = 256
    num_instances: int = 16
    lr: float = 3.5e-4
    weight_decay: float = 5e-4
    step_size: int = 20
    gamma: float = 0.1
    seed: int = 1
    device: str = "auto"
    # Train on the true identities instead of pseudo labels (an upper bound).
    ground_truth: bool = False
    extract_batch_size: int = 128
    threads: int = 0  # 0 = leave torch's default


@dataclass
class EvalConfig:
    every: int = 10
    # "val" (held-out identities, see data.holdout_ids), "test" (the reference
    # code's habit: leaks test labels into model selection) or "none".
    select_best_on: str = "val"
    # Evaluate the untrained model before epoch 1 (the demo's "before" figure).
    at_start: bool = False
    # k-reciprocal re-ranking at test time (k1=20, k2=6, lambda=0.3, Zhong et al.).
    rerank: bool = False
    batch_size: int = 128


@dataclass
class Config:
    name: str = "run"
    out_dir: str = "runs"
    method: str = "cluster_contrast"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    cluster_contrast: ClusterContrastConfig = field(default_factory=ClusterContrastConfig)
    hhcl: HHCLConfig = field(default_factory=HHCLConfig)
    gcl_scl: GCLSCLConfig = field(default_factory=GCLSCLConfig)
    csa_hps: CSAHPSConfig = field(default_factory=CSAHPSConfig)
    cap: CAPConfig = field(default_factory=CAPConfig)
    spcl_uda: SpCLUDAConfig = field(default_factory=SpCLUDAConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> Config:
        t, c = self.train, self.cluster
        checks = [
            (
                "train.batch_size",
                t.batch_size % t.num_instances == 0,
                f"must be a multiple of train.num_instances ({t.num_instances})",
            ),
            ("train.epochs", t.epochs >= 1, "must be >= 1"),
            ("train.iters", t.iters >= 1, "must be >= 1"),
            ("eval.every", self.eval.every >= 1, "must be >= 1"),
            (
                "eval.select_best_on",
                self.eval.select_best_on in ("val", "test", "none"),
                "must be one of val, test, none",
            ),
            (
                "cluster.jaccard_variant",
                c.jaccard_variant in ("paper", "cluster_contrast"),
                "must be 'paper' or 'cluster_contrast'",
            ),
            ("cluster.eps", c.eps > 0, "must be > 0"),
            (
                "cluster.eps",
                c.eps < 1 or c.jaccard_impl == "dense",
                "must be < 1 with the sparse Jaccard (pairs it does not store are at distance 1)",
            ),
            (
                "cluster.jaccard_impl",
                c.jaccard_impl in ("sparse", "dense"),
                "must be 'sparse' or 'dense'",
            ),
            (
                "cluster.knn",
                c.knn in ("torch", "exact", "ivf", "hnsw"),
                "must be torch, exact, ivf or hnsw",
            ),
            ("cluster.ivf_nlist", c.ivf_nlist >= 0, "must be >= 0 (0 = 4 sqrt(N))"),
            ("cluster.ivf_nprobe", c.ivf_nprobe >= 1, "must be >= 1"),
            ("cluster.method", c.method in ("dbscan", "infomap"), "must be 'dbscan' or 'infomap'"),
            ("data.holdout_ids", self.data.holdout_ids >= 0, "must be >= 0"),
            (
                "data.source",
                bool(self.data.source) == (self.method == "spcl_uda"),
                "must name a labelled source dataset exactly when method=spcl_uda "
                f"(method is {self.method!r})",
            ),
            (
                "model.dsbn",
                not self.model.dsbn or bool(self.data.source),
                "needs a source domain (data.source) to keep statistics apart from",
            ),
            (
                "train.batch_size",
                not self.data.source or t.batch_size % (2 * t.num_instances) == 0,
                f"must be a multiple of 2 x train.num_instances ({2 * t.num_instances}) for "
                "domain adaptation: half source, half target",
            ),
        ]
        for key, ok, message in checks:
            if not ok:
                raise ConfigError(f"{key} {message} (got {get_dotted(self, key)!r})")
        return self


def get_dotted(cfg: Any, key: str) -> Any:
    node = cfg
    for part in key.split("."):
        if not dataclasses.is_dataclass(node) or part not in _field_types(type(node)):
            raise ConfigError(f"unknown config key {key!r}")
        node = getattr(node, part)
    return node


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _coerce(value: Any, typ: Any, key: str, origin: str) -> Any:
    """Check a YAML value against the field's type; ints widen to floats, nothing else."""
    if isinstance(typ, types.UnionType) or typing.get_origin(typ) is typing.Union:
        options = typing.get_args(typ)
        if value is None and type(None) in options:
            return None
        typ = next(t for t in options if t is not type(None))
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if typ is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if typ in (int, float, str, bool) and (
        not isinstance(value, typ) or (typ is int and isinstance(value, bool))
    ):
        raise ConfigError(
            f"{origin}: {key} expects {typ.__name__}, got {value!r} ({type(value).__name__})"
        )
    return value


def apply_overrides(cfg: Any, overrides: dict[str, Any], origin: str, prefix: str = "") -> None:
    """Merge a nested dict into the dataclass tree, rejecting unknown keys."""
    if not isinstance(overrides, dict):
        raise ConfigError(f"{origin}: expected a mapping at {prefix or 'top level'}")
    fields = _field_types(type(cfg))
    for key, value in overrides.items():
        dotted = f"{prefix}{key}"
        if key not in fields:
            valid = ", ".join(sorted(fields))
            raise ConfigError(f"{origin}: unknown config key {dotted!r} (valid here: {valid})")
        current = getattr(cfg, key)
        if dataclasses.is_dataclass(current):
            apply_overrides(current, value, origin, prefix=f"{dotted}.")
        else:
            setattr(cfg, key, _coerce(value, fields[key], dotted, origin))


def resolve_preset(name_or_path: str) -> Path:
    """A path to a YAML file, or a preset name such as `demo` or `cluster_contrast/market1501`."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    candidate = PRESET_DIR / f"{name_or_path}.yaml"
    if candidate.is_file():
        return candidate
    raise ConfigError(
        f"no config file or preset named {name_or_path!r}; presets: {', '.join(list_presets())}"
    )


def list_presets() -> list[str]:
    return sorted(
        str(p.relative_to(PRESET_DIR).with_suffix("")) for p in PRESET_DIR.rglob("*.yaml")
    )


def _load_yaml(path: Path, seen: tuple[Path, ...] = ()) -> list[tuple[dict, str]]:
    """The chain of override dicts, base first; `base:` names another preset or file."""
    if path.resolve() in seen:
        raise ConfigError(f"{path}: circular `base:` chain")
    with open(path) as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys at the top level")
    chain: list[tuple[dict, str]] = []
    base = data.pop("base", None)
    if base is not None:
        base_path = path.parent / base if (path.parent / base).is_file() else resolve_preset(base)
        chain += _load_yaml(base_path, seen + (path.resolve(),))
    chain.append((data, str(path)))
    return chain


def parse_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.sub=value")
    key, raw = text.split("=", 1)
    return key.strip(), yaml.safe_load(raw) if raw != "" else ""


def dotted_to_nested(key: str, value: Any) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    node = nested
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return nested


def load_config(preset: str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    cfg = Config()
    if preset:
        for data, origin in _load_yaml(resolve_preset(preset)):
            apply_overrides(cfg, data, origin)
    for text in overrides:
        key, value = parse_override(text)
        apply_overrides(cfg, dotted_to_nested(key, value), "command line")
    return cfg.validate()


def config_from_dict(data: dict[str, Any], origin: str = "checkpoint") -> Config:
    cfg = Config()
    apply_overrides(cfg, data, origin)
    return cfg.validate()


def dump_config(cfg: Config, path: str | Path) -> None:
    with open(path, "w") as f:
        yaml.safe_dump(cfg.to_dict(), f, sort_keys=False)
