"""Fuzzed overrides and preset files: `load_config` returns a Config or raises ConfigError.

Anything typed on a command line or into a YAML file must come back as a
`ConfigError` naming the key, never a TypeError from deep inside the loader.
Keys are drawn from the real sections (walked from their dataclasses, so new
keys are fuzzed as they appear) and from junk; values are YAML of every type,
valid or not. A loaded config must also survive the round trip a run makes
through its `config.yaml`.

A non-string `base:` in a preset file once escaped as a TypeError (found by
this fuzzing); the test at the end pins the fix.
"""

from __future__ import annotations

import dataclasses
import tempfile
import typing
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unreid.config import (
    CORE_SECTIONS,
    Config,
    ConfigError,
    config_from_dict,
    list_presets,
    load_config,
)
from unreid.methods import METHODS, list_methods

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def section_keys(cls: type, prefix: str) -> dict[str, typing.Any]:
    """Dotted key -> annotated type, nested sections (cap.memory.*) included."""
    hints = typing.get_type_hints(cls)
    out: dict[str, typing.Any] = {}
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            out.update(section_keys(hints[f.name], f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = hints[f.name]
    return out


KEY_TYPES = {"name": str, "out_dir": str, "method": str}
for _name, _cls in CORE_SECTIONS.items():
    KEY_TYPES.update(section_keys(_cls, f"{_name}."))
for _method in list_methods():
    KEY_TYPES.update(section_keys(METHODS.get(_method).config, f"{_method}."))
KNOWN_KEYS = sorted(KEY_TYPES)
SECTIONS = sorted({k.rsplit(".", 1)[0] for k in KNOWN_KEYS if "." in k})

# words the string keys take (registry names, choices), so values are often valid
SECTION_CLASSES = [*CORE_SECTIONS.values(), *(METHODS.get(m).config for m in list_methods())]
WORDS = sorted(
    {v for cls in SECTION_CLASSES for v in vars(cls()).values() if isinstance(v, str)}
    | set(list_methods())
    | {"dbscan", "infomap", "ground_truth", "dense", "sparse", "val", "test", "none", "cpu"}
    | {"resnet18", "resnet50", "gem", "avg", "skip", "error", "zero", "reference", "all"}
)
SCALARS = st.one_of(
    st.integers(-3, 300),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, 0.05, 0.5, 0.99, 1.0, 1e-4, 3.5e-4]),
    st.booleans(),
    st.none(),
    st.sampled_from(WORDS),
    st.text(max_size=10),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=5,
)
JUNK_KEYS = st.one_of(
    st.text(max_size=12),
    st.builds(lambda s, k: f"{s}.{k}", st.sampled_from(SECTIONS), st.text(max_size=8)),
    st.sampled_from(SECTIONS),
)
TYPED = {
    int: st.integers(-2, 300),
    float: st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(0, 1)),
    bool: st.booleans(),
    str: st.one_of(st.sampled_from(WORDS), st.text(max_size=8)),
}


def plain_type(annotation: typing.Any) -> typing.Any:
    """`int | None` -> int: the type a value must have, None aside."""
    options = [a for a in typing.get_args(annotation) if a is not type(None)]
    return options[0] if options else annotation


def value_for(key: str) -> st.SearchStrategy:
    """Mostly a value of the key's own type (so checks deeper than the type run), or anything."""
    typed = TYPED.get(plain_type(KEY_TYPES.get(key)))
    return VALUES if typed is None else st.one_of(typed, typed, VALUES)


def as_yaml(value: object) -> str:
    """The value as one line of YAML, as a user would type it."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


@st.composite
def method_keys(draw: st.DrawFn, method: str) -> str:
    """Keys of the core sections and the active method mostly, other methods' or junk sometimes."""
    own = [k for k in KNOWN_KEYS if k.split(".")[0] in (*CORE_SECTIONS, method)]
    return draw(st.one_of(*[st.sampled_from(own)] * 6, st.sampled_from(KNOWN_KEYS), JUNK_KEYS))


@st.composite
def overrides(draw: st.DrawFn, method: str | None = None) -> list[str]:
    out = []
    if method is None and draw(st.booleans()):
        method = draw(st.sampled_from(list_methods()))
        out.append(f"method={method}")
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.integers(0, 14))
        key = draw(method_keys(method or "cluster_contrast"))
        # hypothesis leans to 0, so 0 is the common case: a key and a YAML value
        if kind < 13:
            out.append(f"{key}={as_yaml(draw(value_for(key)))}")
        elif kind == 13:
            out.append(f"{key}={draw(st.text(max_size=12))}")  # raw, maybe not YAML
        else:
            out.append(draw(st.text(max_size=20)))  # anything, "=" or not
    return out


def check_loaded(load: typing.Callable[[], Config]) -> None:
    try:
        cfg = load()
    except ConfigError as err:
        assert str(err)
        return
    assert isinstance(cfg, Config) and cfg.method in list_methods()
    # what a run writes to config.yaml reloads to the same config
    saved = yaml.safe_load(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    again = config_from_dict(saved, origin="config.yaml")
    assert yaml.safe_dump(again.to_dict()) == yaml.safe_dump(cfg.to_dict())


@FUZZ
@given(extra=overrides())
def test_any_overrides_give_a_config_or_a_config_error(extra: list[str]) -> None:
    check_loaded(lambda: load_config(None, extra))


@settings(FUZZ, max_examples=60)
@given(data=st.data(), preset=st.sampled_from(list_presets()))
def test_any_overrides_on_a_preset_give_a_config_or_a_config_error(
    data: st.DataObject, preset: str
) -> None:
    extra = data.draw(overrides(load_config(preset).method), label="overrides")
    check_loaded(lambda: load_config(preset, extra))


@st.composite
def documents(draw: st.DrawFn) -> dict:
    """A preset file's mapping: nested sections, dotted keys, junk, maybe a string base."""
    doc: dict = {}
    if draw(st.booleans()):
        doc["method"] = draw(st.sampled_from(list_methods()))
    method = doc.get("method", "cluster_contrast")
    for _ in range(draw(st.integers(0, 6))):
        key = draw(method_keys(method))
        value = draw(value_for(key))
        if draw(st.booleans()) and "." in key:  # nest it as a user would write it
            section, leaf = key.rsplit(".", 1)
            node = doc.setdefault(section, {})
            if isinstance(node, dict):
                node[leaf] = value
                continue
        doc[key] = value
    if draw(st.integers(0, 3)) == 3:
        doc["base"] = draw(st.sampled_from([*list_presets()[:3], "demo", "nope", "", 5, ["demo"]]))
    return doc


@FUZZ
@given(text=st.one_of(documents().map(yaml.safe_dump), st.text(max_size=60)))
def test_any_preset_file_gives_a_config_or_a_config_error(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzzed.yaml"
        path.write_text(text, encoding="utf-8")
        check_loaded(lambda: load_config(str(path)))


@pytest.mark.parametrize("base", ["5", "[demo]", "{a: 1}"])
def test_a_non_string_base_is_a_config_error(base: str, tmp_path: Path) -> None:
    path = tmp_path / "preset.yaml"
    path.write_text(f"base: {base}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="base"):
        load_config(str(path))
