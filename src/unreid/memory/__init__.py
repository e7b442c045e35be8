"""Feature memories: buffers read by the losses and updated explicitly after each step."""

from unreid.memory.camera_proxy_memory import CameraProxyMemory
from unreid.memory.cluster_memory import ClusterMemory
from unreid.memory.instance_memory import InstanceMemory
from unreid.memory.policies import (
    MEMORIES,
    HardClusterMemory,
    MeanClusterMemory,
    MomentumClusterMemory,
    RandomClusterMemory,
    TopKClusterMemory,
    build_cluster_memory,
    list_memories,
)

__all__ = [
    "MEMORIES",
    "CameraProxyMemory",
    "ClusterMemory",
    "HardClusterMemory",
    "InstanceMemory",
    "MeanClusterMemory",
    "MomentumClusterMemory",
    "RandomClusterMemory",
    "TopKClusterMemory",
    "build_cluster_memory",
    "list_memories",
]
