"""unreid: unsupervised person re-identification by clustering and contrastive memories."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "load_model"]


def __getattr__(name: str) -> Any:
    # `from unreid import load_model` without making `import unreid` pull in torch.
    if name == "load_model":
        from unreid.inference import load_model

        return load_model
    raise AttributeError(f"module 'unreid' has no attribute {name!r}")
