"""Loading a benchmarks/ script as a module, for the tests of that folder."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def load_script(filename: str, module_name: str) -> ModuleType:
    """benchmarks/<filename> under `module_name`, a name that cannot clash with tests/ modules.

    The module is registered in sys.modules before it runs because dataclasses look
    their defining module up while the class body executes.
    """
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))  # the scripts import their siblings (method_table, ...)
    spec = importlib.util.spec_from_file_location(module_name, BENCH / filename)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module
