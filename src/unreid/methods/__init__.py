"""Training methods, one file each; importing this package registers them."""

from unreid.methods import cluster_contrast, csa_hps, gcl_scl, hhcl  # noqa: F401
from unreid.methods.base import METHODS, Batch, Method, build_method, register_method

__all__ = ["METHODS", "Batch", "Method", "build_method", "register_method"]
