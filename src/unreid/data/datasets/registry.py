"""The dataset registry, in a module of its own so each format module can register its
loader without importing the package that imports it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from unreid.data.datasets.layout import LoadReport
from unreid.data.samples import ReidDataset
from unreid.registry import Registry

Loader = Callable[[Path], tuple[ReidDataset, LoadReport]]

DATASETS: Registry[Loader] = Registry("dataset")


def list_datasets() -> list[str]:
    """Registered dataset names, sorted (aliases such as veri776 excluded)."""
    return DATASETS.names()
