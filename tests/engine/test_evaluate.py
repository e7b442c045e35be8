"""Evaluation from the loop: one extraction of query + gallery, then the Market protocol."""

from __future__ import annotations

import torch
from torch import nn

from unreid.data.samples import Sample
from unreid.engine.evaluate import evaluate_model, evaluate_samples
from unreid.features import Extractor


def test_rerank_switch_reaches_the_evaluator(monkeypatch):
    from unreid.data.samples import Sample
    from unreid.engine import evaluate as engine

    seen = {}

    def fake(*args, rerank=False, **kwargs):
        seen["rerank"] = rerank
        return "metrics"

    monkeypatch.setattr(engine, "evaluate_features", fake)
    q, g = [Sample("q.jpg", 0, 1)], [Sample("g.jpg", 1, 1)]
    assert (
        engine.evaluate_samples(torch.ones(1, 2), torch.ones(1, 2), q, g, rerank=True) == "metrics"
    )
    assert seen["rerank"] is True


def test_evaluate_samples_applies_the_protocol():
    # query id 1 cam 0; gallery: same id other camera (hit), same id same camera (removed),
    # other id (miss) closer than the hit
    q = [Sample("q.jpg", 0, 1)]
    g = [Sample("a.jpg", 1, 1), Sample("b.jpg", 0, 1), Sample("c.jpg", 1, 2)]
    qf = torch.tensor([[1.0, 0.0]])
    gf = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.9, 0.1]])
    m = evaluate_samples(qf, gf, q, g)
    assert m.rank1 == 0.0 and m.mAP == 0.5  # the hit is ranked second once b is removed


class _Coords(nn.Module):
    """A 'model' whose feature is read from the image: mean of each channel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(x.mean(dim=(2, 3)), dim=1)


def test_evaluate_model_extracts_once_and_splits_query_from_gallery(tmp_path):
    from PIL import Image

    samples = []
    for i, (colour, pid, cam) in enumerate(
        [((250, 10, 10), 1, 0), ((10, 250, 10), 2, 0), ((240, 20, 10), 1, 1), ((10, 240, 20), 2, 1)]
    ):
        path = tmp_path / f"{i}.png"
        Image.new("RGB", (8, 16), colour).save(path)
        samples.append(Sample(str(path), cam, pid))
    calls = []
    extract = Extractor(16, 8, batch_size=2, workers=0, progress=False)

    class Spy(Extractor):
        def __call__(self, model, s, desc):
            calls.append(len(s))
            return extract(model, s, desc)

    spy = Spy(16, 8, batch_size=2, workers=0, progress=False)
    m = evaluate_model(_Coords(), samples[:2], samples[2:], spy)
    assert calls == [4] and m.mAP == 1.0 and m.rank1 == 1.0
