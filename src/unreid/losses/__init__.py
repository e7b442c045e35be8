"""Losses as pure functions of (embeddings, targets, bank, ...)."""

from unreid.losses.cluster_nce import cluster_nce

__all__ = ["cluster_nce"]
