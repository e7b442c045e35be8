"""The run configuration: defaults, YAML presets, dotted overrides, checked at load time.

A config is the core sections (`settings.py`) plus the section of the active
method, whose dataclass lives next to the method (`methods/<name>.py`). Every
layer (preset chain, then command-line overrides) is merged first and the
result built once, so every value is checked before any data is read: an
unknown key, a bad value, a misspelt method or a section of a method that is
not active is an error naming the key, the value, what is allowed and where
the value came from. Keys the chosen mode ignores are reported, and left out
of the `config.yaml` a run keeps, which holds only what applies to it.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from unreid.data.datasets import DATASETS
from unreid.errors import ConfigError, SettingError
from unreid.methods import METHODS, list_methods
from unreid.models import BACKBONES, POOLINGS
from unreid.presets import list_presets, preset_chain, resolve_preset
from unreid.pseudo_labels.clusterers import CLUSTERERS
from unreid.settings import (
    ClusterConfig,
    DataConfig,
    EvalConfig,
    LogConfig,
    ModelConfig,
    TrainConfig,
)

__all__ = [
    "ClusterConfig",
    "Config",
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "LogConfig",
    "ModelConfig",
    "TrainConfig",
    "config_from_dict",
    "dump_config",
    "list_presets",
    "load_config",
    "parse_override",
    "resolve_preset",
]

CORE_SECTIONS = {
    "data": DataConfig,
    "model": ModelConfig,
    "cluster": ClusterConfig,
    "train": TrainConfig,
    "eval": EvalConfig,
    "log": LogConfig,
}
TOP_LEVEL = {"name": str, "out_dir": str, "method": str}
log = logging.getLogger("unreid")


@dataclass
class Config:
    name: str = "run"
    out_dir: str = "runs"
    method: str = "cluster_contrast"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    log: LogConfig = field(default_factory=LogConfig)
    # The active method's own section (an instance of its registered config class).
    method_cfg: Any = None

    def __post_init__(self) -> None:
        if self.method_cfg is None:
            self.method_cfg = METHODS.get(self.method).config()

    def __getattr__(self, name: str) -> Any:
        # `cfg.hhcl` reads the active method's section by its name, as in the YAML
        if name != "method" and name == self.__dict__.get("method"):
            return self.__dict__["method_cfg"]
        raise AttributeError(
            f"Config has no attribute {name!r} (the active method is "
            f"{self.__dict__.get('method')!r}; only its section is loaded)"
        )

    def to_dict(self) -> dict[str, Any]:
        """What applies to this run: the active method's section, without ignored keys."""
        out: dict[str, Any] = {"name": self.name, "out_dir": self.out_dir, "method": self.method}
        for key in CORE_SECTIONS:
            out[key] = _applied(getattr(self, key))
            if key == "model":
                out[self.method] = _applied(self.method_cfg)
        return out

    def ignored(self) -> dict[str, str]:
        """Dotted keys this run's modes ignore -> the setting that makes them moot."""
        out: dict[str, str] = {}
        for prefix in CORE_SECTIONS:
            section = getattr(self, prefix)
            out.update({f"{prefix}.{k}": why for k, why in section.ignored().items()})
        out.update(
            {f"{self.method}.{k}": why for k, why in _section_ignored(self.method_cfg).items()}
        )
        return out

    def validate(self) -> Config:
        """Checks across sections and against the registries (single sections check themselves)."""
        needs_source = METHODS.get(self.method).needs_source
        t = self.train
        checks = [
            ("data.dataset", self.data.dataset in DATASETS, _names("dataset", DATASETS)),
            ("model.arch", self.model.arch in BACKBONES, _names("backbone", BACKBONES)),
            ("model.pooling", self.model.pooling in POOLINGS, _names("pooling", POOLINGS)),
            ("cluster.method", self.cluster.method in CLUSTERERS, _names("", CLUSTERERS)),
            (
                "data.source",
                needs_source is None or bool(self.data.source) == needs_source,
                "must name a labelled source dataset exactly when the method adapts domains "
                f"(method={self.method!r})",
            ),
            (
                "data.source",
                not self.data.source or self.data.source in DATASETS,
                _names("dataset", DATASETS),
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
        run_checks = getattr(self.method_cfg, "run_checks", None)  # the method's cross-checks
        checks += run_checks(self) if run_checks is not None else []
        for key, ok, message in checks:
            if not ok:
                raise ConfigError(f"{key}={_get(self, key)!r}: {message}")
        return self


def _names(kind: str, registry: Any) -> str:
    return f"must be one of {', '.join(registry.names())}"


def _get(cfg: Config, key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        node = getattr(node, part)
    return node


def _section_ignored(section: Any) -> dict[str, str]:
    return section.ignored() if hasattr(section, "ignored") else {}


def _applied(section: Any) -> dict[str, Any]:
    skip = _section_ignored(section)
    return {
        f.name: _applied(v) if dataclasses.is_dataclass(v) else v
        for f in dataclasses.fields(section)
        if f.name not in skip
        for v in (getattr(section, f.name),)
    }


# --------------------------------------------------------------------------- values
_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def _coerce(value: Any, typ: Any, key: str, origin: str) -> Any:
    """A YAML value checked against the field's type; ints widen to floats.

    YAML 1.1 reads `1e-4` (no dot) as a string; a float field takes it as the
    number it plainly is.
    """
    if isinstance(typ, types.UnionType) or typing.get_origin(typ) is typing.Union:
        options = typing.get_args(typ)
        if value is None and type(None) in options:
            return None
        typ = next(t for t in options if t is not type(None))
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if typ is float and isinstance(value, str) and _FLOAT.match(value.strip()):
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


Flat = dict[str, tuple[Any, str]]  # dotted key -> (value, where it came from)


def _flatten(data: Any, origin: str, prefix: str, out: Flat) -> None:
    if not isinstance(data, dict):
        raise ConfigError(
            f"{origin}: expected a mapping at {prefix.rstrip('.') or 'top level'}, got {data!r}"
        )
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            _flatten(value, origin, f"{dotted}.", out)
        else:
            out[dotted] = (value, origin)


def _build_section(cls: type, prefix: str, flat: Flat, used: set[str]) -> Any:
    """`cls(**values)`: its `__post_init__` checks them; errors get the full key and origin."""
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        typ = hints[f.name]
        if dataclasses.is_dataclass(typ):
            kwargs[f.name] = _build_section(typ, f"{key}.", flat, used)
        elif key in flat:
            value, origin = flat[key]
            kwargs[f.name] = _coerce(value, typ, key, origin)
            used.add(key)
    try:
        return cls(**kwargs)
    except SettingError as err:
        origin = flat.get(f"{prefix}{err.key}", (None, "defaults"))[1]
        raise err.under(prefix, origin) from None


def _unknown(key: str, origin: str, valid: list[str]) -> ConfigError:
    return ConfigError(
        f"{origin}: unknown config key {key!r} (valid here: {', '.join(sorted(valid))})"
    )


def _check_keys(flat: Flat, method: str, used: set[str]) -> None:
    sections = {*CORE_SECTIONS, *METHODS.names()} | {
        k.rsplit(".", 1)[0] for k in _all_keys(method) if "." in k.split(".", 1)[1]
    }
    for key, (value, origin) in flat.items():
        if key in used or key in TOP_LEVEL:
            continue
        if key in sections:
            raise ConfigError(f"{origin}: expected a mapping at {key}, got {value!r}")
        head, _, rest = key.partition(".")
        if head in METHODS and head != method and rest:
            raise ConfigError(
                f"{origin}: section {head!r} configures method {head!r}, but method={method!r} "
                f"(key {key!r}); remove the section or set method={head}"
            )
        if head in CORE_SECTIONS or head == method:
            parent = key.rsplit(".", 1)[0]
            valid = [k.rsplit(".", 1)[1] for k in _all_keys(method) if k.startswith(parent + ".")]
            raise _unknown(key, origin, valid)
        raise _unknown(key, origin, [*TOP_LEVEL, *CORE_SECTIONS, method])


def _all_keys(method: str) -> list[str]:
    def walk(cls: type, prefix: str) -> list[str]:
        hints = typing.get_type_hints(cls)
        out = []
        for f in dataclasses.fields(cls):
            out.append(f"{prefix}{f.name}")
            if dataclasses.is_dataclass(hints[f.name]):
                out += walk(hints[f.name], f"{prefix}{f.name}.")
        return out

    keys = [k for name, cls in CORE_SECTIONS.items() for k in walk(cls, f"{name}.")]
    return keys + walk(METHODS.get(method).config, f"{method}.")


def build_config(flat: Flat) -> Config:
    """One validated `Config` from merged dotted keys (later layers already won)."""
    for key, typ in TOP_LEVEL.items():
        if key in flat:
            flat[key] = (_coerce(flat[key][0], typ, key, flat[key][1]), flat[key][1])
    method, origin = flat.get("method", ("cluster_contrast", "defaults"))
    if method not in METHODS:
        raise ConfigError(
            f"{origin}: method={method!r}: must be one of {', '.join(list_methods())}"
        )
    used: set[str] = set()
    sections = {
        name: _build_section(cls, f"{name}.", flat, used) for name, cls in CORE_SECTIONS.items()
    }
    method_cfg = _build_section(METHODS.get(method).config, f"{method}.", flat, used)
    _check_keys(flat, method, used)
    top = {k: flat[k][0] for k in TOP_LEVEL if k in flat}
    cfg = Config(**top, **sections, method_cfg=method_cfg).validate()
    for key, why in cfg.ignored().items():
        if key in flat:
            log.warning("%s: %s=%r is ignored (%s)", flat[key][1], key, flat[key][0], why)
    return cfg


# --------------------------------------------------------------------------- overrides
def parse_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.sub=value")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        raise ConfigError(f"override {text!r}: the value is not valid YAML") from None
    return key.strip(), value


def merge_layers(
    layers: list[tuple[dict, str]], overrides: list[str] | tuple[str, ...] = ()
) -> Flat:
    flat: Flat = {}
    for data, origin in layers:
        _flatten(data, origin, "", flat)
    for text in overrides:
        key, value = parse_override(text)
        if isinstance(value, dict):
            _flatten(value, "command line", f"{key}.", flat)
        else:
            flat[key] = (value, "command line")
    return flat


def load_config(preset: str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    layers = preset_chain(resolve_preset(preset)) if preset else []
    return build_config(merge_layers(layers, overrides))


def config_from_dict(
    data: dict[str, Any], origin: str = "checkpoint", overrides: list[str] | tuple[str, ...] = ()
) -> Config:
    """A saved run's config (`config.yaml` or a checkpoint), then overrides, checked as one."""
    data = dict(data)
    active = data.get("method", "cluster_contrast")
    for name in list_methods():  # runs saved before configs held only their own section
        if name != active:
            data.pop(name, None)
    return build_config(merge_layers([(data, origin)], overrides))


def dump_config(cfg: Config, path: str | Path) -> None:
    with open(path, "w") as f:
        yaml.safe_dump(cfg.to_dict(), f, sort_keys=False)
