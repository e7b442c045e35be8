"""One registry style for every named choice: datasets, backbones, poolings,
memories, clusterers, methods.

A name in a config file is looked up here; an unknown name is an error that
lists what is available, and `names()` is what the CLI prints and what the
registry-wide tests iterate over (timm's `register_model` / `list_models`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError, ValueError):
    """A registry was asked for a name it does not hold; the message lists the valid ones."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Registry(Generic[T]):
    """Name -> entry, filled by `register` at import time, read by `get`."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str, entry: T | None = None, *, aliases: tuple[str, ...] = ()):
        """`REG.register("x", obj)`, or `@REG.register("x")` above a function or class."""

        def add(value: T) -> T:
            for key in (name, *aliases):
                if key in self._entries or key in self._aliases:
                    raise ValueError(f"{self.kind} {key!r} registered twice")
            self._entries[name] = value
            for alias in aliases:
                self._aliases[alias] = name
            return value

        if entry is not None:
            add(entry)
            return entry
        return add

    def canonical(self, name: str) -> str:
        """The registered name behind `name` (an alias resolves to its target)."""
        if name in self._entries:
            return name
        if name in self._aliases:
            return self._aliases[name]
        raise UnknownNameError(
            f"unknown {self.kind} {name!r}; available: {', '.join(self.names()) or '(none)'}"
        )

    def get(self, name: str) -> T:
        return self._entries[self.canonical(name)]

    def names(self) -> list[str]:
        """Registered names, sorted (aliases excluded)."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)


def make_lister(registry: Registry) -> Callable[[], list[str]]:
    """`list_<kind>()` for a registry: the sorted names."""
    return registry.names
