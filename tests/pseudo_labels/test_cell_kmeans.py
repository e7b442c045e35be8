"""k-means into many cells and the two-level nearest-centroid search, against brute force."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from unreid.pseudo_labels import cell_kmeans as ck


def blobs(n: int, dim: int, centres: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    c = F.normalize(torch.randn(centres, dim, generator=g), dim=1)
    x = c[torch.randint(0, centres, (n,), generator=g)] + 0.15 * torch.randn(n, dim, generator=g)
    return F.normalize(x, dim=1)


def brute(z: torch.Tensor, cent: torch.Tensor) -> torch.Tensor:
    return torch.tensor([int(np.argmax([float(r @ c) for c in cent])) for r in z])


def test_below_the_two_level_size_the_search_is_brute_force() -> None:
    z, cent = blobs(200, 8, 5, 0), blobs(30, 8, 5, 1)
    assert torch.equal(ck.NearestCentroid(cent)(z), brute(z, cent))


def test_two_level_search_probing_every_coarse_cell_is_exact_and_few_probes_nearly(
    monkeypatch,
) -> None:
    monkeypatch.setattr(ck, "DIRECT_BELOW", 16)
    z, cent = blobs(600, 16, 40, 2), blobs(100, 16, 40, 3)  # 100 centroids, 10 coarse cells
    want = (z @ cent.T).argmax(dim=1)
    monkeypatch.setattr(ck, "COARSE_PROBES", 10)
    assert torch.equal(ck.NearestCentroid(cent)(z), want)
    monkeypatch.setattr(ck, "COARSE_PROBES", 3)
    got = ck.NearestCentroid(cent)(z)
    assert (got == want).float().mean() > 0.9  # approximate: a few rows miss their best
    best, found = (z @ cent.T).max(dim=1).values, (z * cent[got]).sum(dim=1)
    assert (found <= best + 1e-6).all()


def test_kmeans_lowers_its_objective_splits_empty_cells_and_keeps_spheres(monkeypatch) -> None:
    x = blobs(800, 12, 20, 4)
    start = ck.kmeans(x, 20, spherical=True, seed=0, iters=0)
    end = ck.kmeans(x, 20, spherical=True, seed=0, iters=6)

    def objective(c: torch.Tensor) -> float:
        return float((x @ c.T).max(dim=1).values.sum())

    assert objective(end) > objective(start)  # inner products to the nearest centroid
    assert torch.allclose(end.norm(dim=1), torch.ones(20), atol=1e-5)
    assert torch.bincount((x @ end.T).argmax(dim=1), minlength=20).min() > 0
    means = ck.kmeans(x, 20, spherical=False, seed=0, iters=3)
    assert (means.norm(dim=1) < 1).any()  # members' means, not renormalised
    with pytest.raises(ValueError, match="k=801 for 800 rows"):
        ck.kmeans(x, 801, spherical=True, seed=0, iters=1)


def test_an_empty_centroid_takes_half_of_the_largest_cluster() -> None:
    cent = torch.tensor([[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]])
    counts = torch.tensor([10, 3, 0])
    ck._split_largest(cent, counts, torch.Generator().manual_seed(0))
    assert torch.allclose(cent[2], torch.tensor([1.0, 0.0]), atol=1e-2)
    assert torch.allclose(cent[0], torch.tensor([1.0, 0.0]), atol=1e-2)
    assert not torch.equal(cent[0], cent[2])  # nudged apart
