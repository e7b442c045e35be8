"""Preset files: names, `base:` chains, YAML errors that name the file and the line.

Presets ship inside the package (`unreid/configs/`), so an installed `unreid`
finds them; any YAML path works too.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from unreid.errors import ConfigError

PRESET_DIR = Path(__file__).parent / "configs"


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


def preset_chain(path: Path, seen: tuple[Path, ...] = ()) -> list[tuple[dict, str]]:
    """The override dicts of a preset and its `base:` ancestors, base first."""
    if path.resolve() in seen:
        raise ConfigError(f"{path}: circular `base:` chain")
    try:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}:{where}: not valid YAML ({err})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys at the top level")
    chain: list[tuple[dict, str]] = []
    base = data.pop("base", None)
    if base is not None and not isinstance(base, str):
        raise ConfigError(
            f"{path}: base: expected the name of a preset or a YAML file, got {base!r}"
        )
    if base is not None:
        base_path = path.parent / base if (path.parent / base).is_file() else resolve_preset(base)
        chain += preset_chain(base_path, seen + (path.resolve(),))
    chain.append((data, str(path)))
    return chain
