"""Setting checks: the message names key, value and what is allowed."""

from __future__ import annotations

import pytest

from unreid.errors import ConfigError, SettingError, check, check_choice, check_range


def test_choice_names_the_allowed_values():
    check_choice("form", "paper", ("paper", "released"))
    with pytest.raises(SettingError, match=r"form='papr': must be one of paper, released"):
        check_choice("form", "papr", ("paper", "released"))


@pytest.mark.parametrize(
    ("kwargs", "value", "message"),
    [
        ({"low": 0, "high": 1}, 2, r"must be in \[0, 1\]"),
        ({"low": 0, "high": 1, "high_open": True}, 1, r"must be in \[0, 1\)"),
        ({"low": 0, "low_open": True}, 0, "must be > 0"),
        ({"low": 1}, 0, "must be >= 1"),
        ({"high": 5, "high_open": True}, 5, "must be < 5"),
    ],
)
def test_range_bounds(kwargs, value, message):
    with pytest.raises(SettingError, match=message):
        check_range("k", value, **kwargs)


def test_range_accepts_the_closed_ends():
    check_range("k", 0, 0, 1)
    check_range("k", 1, 0, 1)


def test_under_adds_section_and_origin():
    err = SettingError("mu", 2.0, "must be in [0, 1]")
    full = err.under("hhcl.", "presets/x.yaml")
    assert isinstance(full, ConfigError)
    assert str(full) == "presets/x.yaml: hhcl.mu=2.0: must be in [0, 1]"
    with pytest.raises(SettingError, match="needs ns"):
        check("cr", True, False, "needs ns")
