"""The one registry style: register, look up (aliases too), list, and clear errors."""

from __future__ import annotations

import pytest

from unreid.registry import Registry, UnknownNameError


def test_register_get_alias_and_names():
    reg: Registry[int] = Registry("widget")
    reg.register("b", 2)

    @reg.register("a", aliases=("alpha",))
    def make_a() -> int:
        return 1

    assert reg.names() == ["a", "b"] and list(reg) == ["a", "b"] and len(reg) == 2
    assert reg.get("alpha") is make_a and reg.canonical("alpha") == "a"
    assert "alpha" in reg and "c" not in reg


def test_unknown_and_duplicate_names():
    reg: Registry[int] = Registry("widget")
    reg.register("a", 1, aliases=("x",))
    with pytest.raises(UnknownNameError, match="unknown widget 'c'; available: a") as err:
        reg.get("c")
    assert isinstance(err.value, ValueError) and isinstance(err.value, KeyError)
    assert str(err.value) == "unknown widget 'c'; available: a"
    for name in ("a", "x"):
        with pytest.raises(ValueError, match=f"widget {name!r} registered twice"):
            reg.register(name, 2)


@pytest.mark.parametrize(
    ("module", "lister", "expected"),
    [
        ("unreid.data.datasets", "list_datasets", "market1501"),
        ("unreid.models", "list_backbones", "resnet50"),
        ("unreid.models", "list_poolings", "gem"),
        ("unreid.memory", "list_memories", "momentum"),
        ("unreid.pseudo_labels.clusterers", "list_clusterers", "ground_truth"),
        ("unreid.methods", "list_methods", "hhcl"),
    ],
)
def test_every_named_choice_has_a_lister(module, lister, expected):
    import importlib

    names = getattr(importlib.import_module(module), lister)()
    assert expected in names and names == sorted(names)
