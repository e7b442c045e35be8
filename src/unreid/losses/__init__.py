"""Losses as pure functions of (embeddings, targets, bank, ...), all checked by `check_loss_inputs`."""

from unreid.losses.camera_proxy_nce import inter_camera_nce, intra_camera_nce
from unreid.losses.checks import check_loss_inputs
from unreid.losses.cluster_nce import cluster_nce
from unreid.losses.hard_instance_nce import hard_instance_logits, hard_instance_nce
from unreid.losses.ice import ice_hard_instance_nce, ice_proxy_nce, ice_soft_consistency
from unreid.losses.selective_nce import selective_nce

__all__ = [
    "check_loss_inputs",
    "cluster_nce",
    "hard_instance_logits",
    "hard_instance_nce",
    "ice_hard_instance_nce",
    "ice_proxy_nce",
    "ice_soft_consistency",
    "inter_camera_nce",
    "intra_camera_nce",
    "selective_nce",
]
