"""Feature memories: buffers read by the losses and updated explicitly after each step."""

from unreid.memory.cluster_memory import (
    ClusterMemory,
    HardClusterMemory,
    MeanClusterMemory,
    MomentumClusterMemory,
    build_cluster_memory,
)
from unreid.memory.selective_memory import SelectiveClusterMemory

__all__ = [
    "ClusterMemory",
    "HardClusterMemory",
    "MeanClusterMemory",
    "MomentumClusterMemory",
    "SelectiveClusterMemory",
    "build_cluster_memory",
]
