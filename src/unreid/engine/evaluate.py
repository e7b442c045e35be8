"""Evaluation inside and outside the loop: features of query + gallery, then the protocol."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from unreid.data.samples import Sample
from unreid.evaluation import RankingMetrics, evaluate_features
from unreid.features import Extractor


def evaluate_samples(
    qf: torch.Tensor | np.ndarray,
    gf: torch.Tensor | np.ndarray,
    query: list[Sample],
    gallery: list[Sample],
    rerank: bool = False,
) -> RankingMetrics:
    """The Market protocol on given features (same id + same camera gallery entries removed)."""
    return evaluate_features(
        qf,
        gf,
        np.array([s.pid for s in query]),
        np.array([s.pid for s in gallery]),
        np.array([s.camera for s in query]),
        np.array([s.camera for s in gallery]),
        rerank=rerank,
    )


def evaluate_model(
    model: nn.Module,
    query: list[Sample],
    gallery: list[Sample],
    extract: Extractor,
    rerank: bool = False,
) -> RankingMetrics:
    """Extract query and gallery in one pass, then rank."""
    feats = extract(model, query + gallery, "evaluate")
    return evaluate_samples(feats[: len(query)], feats[len(query) :], query, gallery, rerank)
