"""Feature extraction: dataset order, eval mode during, train mode restored, empty input refused."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from torch import nn

from unreid.data.samples import Sample
from unreid.features import Extractor, extract_features


class MeanColour(nn.Module):
    """Feature = per-channel mean; records the mode it ran in."""

    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(3)
        self.modes: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.modes.append(self.training)
        return x.mean(dim=(2, 3))


@pytest.fixture
def samples(tmp_path):
    out = []
    for i in range(5):
        path = tmp_path / f"{i}.png"
        Image.new("RGB", (6, 12), (40 * i, 0, 255 - 40 * i)).save(path)
        out.append(Sample(str(path), 0, i))
    return out


def test_features_follow_sample_order_in_eval_mode(samples):
    model = MeanColour().train()
    feats = extract_features(model, samples, 12, 6, batch_size=2, workers=0, progress=False)
    assert feats.shape == (5, 3) and feats.dtype == torch.float32
    red = feats[:, 0]
    assert torch.all(red[1:] > red[:-1])  # images get redder in sample order
    assert model.modes == [False, False, False] and model.training  # 3 batches, mode restored


def test_extractor_binds_the_settings(samples):
    ex = Extractor(12, 6, batch_size=4, workers=0, progress=False)
    model = MeanColour()
    torch.testing.assert_close(
        ex(model, samples, "x"), extract_features(model, samples, 12, 6, 4, 0, progress=False)
    )
    assert ex.with_batch_size(1).batch_size == 1 and ex.batch_size == 4
    ex.with_batch_size(1)(model, samples, "x")


def test_no_images_is_an_error():
    with pytest.raises(ValueError, match="evaluate: no images"):
        Extractor(12, 6, workers=0)(MeanColour(), [], "evaluate")
