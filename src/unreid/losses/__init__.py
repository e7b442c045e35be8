"""Losses as pure functions of (embeddings, targets, bank, ...)."""

from unreid.losses.cluster_nce import cluster_nce
from unreid.losses.hard_instance_nce import hard_instance_logits, hard_instance_nce
from unreid.losses.selective_nce import selective_nce

__all__ = ["cluster_nce", "hard_instance_logits", "hard_instance_nce", "selective_nce"]
