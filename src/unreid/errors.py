"""The project's own error for bad settings, and the checks that raise it.

It lives in a leaf module (no project imports) so that config sections
defined next to the code they configure (a method's dataclass in its method
file, the core sections in `settings.py`) can validate themselves in
`__post_init__` without importing the config loader.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any


class ConfigError(ValueError):
    """A configuration key or value is wrong; the message says which and why."""


class SettingError(ConfigError):
    """A value a config section rejected; the loader adds the section and the origin."""

    def __init__(self, key: str, value: Any, expected: str) -> None:
        self.key, self.value, self.expected = key, value, expected
        super().__init__(f"{key}={value!r}: {expected}")

    def under(self, prefix: str, origin: str = "") -> ConfigError:
        """The same error named by its full dotted key (and where the value came from)."""
        where = f"{origin}: " if origin else ""
        return ConfigError(f"{where}{prefix}{self.key}={self.value!r}: {self.expected}")


def check_choice(key: str, value: Any, allowed: Iterable[str]) -> None:
    allowed = tuple(allowed)
    if value not in allowed:
        raise SettingError(key, value, f"must be one of {', '.join(map(str, allowed))}")


def check_range(
    key: str,
    value: float,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    """`low <= value <= high` (either bound optional; open bounds exclude the end)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise SettingError(key, value, "must be a finite number")
    ok = True
    if low is not None:
        ok = ok and (value > low if low_open else value >= low)
    if high is not None:
        ok = ok and (value < high if high_open else value <= high)
    if not ok:
        lo = "" if low is None else f"{'(' if low_open else '['}{low}"
        hi = "" if high is None else f"{high}{')' if high_open else ']'}"
        if low is not None and high is not None:
            text = f"must be in {lo}, {hi}"
        elif low is not None:
            text = f"must be {'>' if low_open else '>='} {low}"
        else:
            text = f"must be {'<' if high_open else '<='} {high}"
        raise SettingError(key, value, text)


def check(key: str, value: Any, ok: bool, expected: str) -> None:
    if not ok:
        raise SettingError(key, value, expected)
