"""Networks and the registries of the names a config may choose (`model.arch`, `model.pooling`).

The registries are re-exported here because the config loader checks names against them
without caring which module defines each one.
"""

from unreid.models.backbones import BACKBONES, Backbone, describe_backbones, list_backbones
from unreid.models.pooling import POOLINGS, list_poolings

__all__ = [
    "BACKBONES",
    "POOLINGS",
    "Backbone",
    "describe_backbones",
    "list_backbones",
    "list_poolings",
]
