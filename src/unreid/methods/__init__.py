"""Training methods, one file each with its own config; importing this package registers them."""

from unreid.methods import (  # noqa: F401
    cap,
    cluster_contrast,
    csa_hps,
    gcl_scl,
    hhcl,
    ice,
    spcl,
    spcl_uda,
)
from unreid.methods.base import (
    METHODS,
    Batch,
    Method,
    MethodContext,
    MethodSpec,
    build_method,
    list_methods,
    register_method,
)

__all__ = [
    "METHODS",
    "Batch",
    "Method",
    "MethodContext",
    "MethodSpec",
    "build_method",
    "list_methods",
    "register_method",
]
