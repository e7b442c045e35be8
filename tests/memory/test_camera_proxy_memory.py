"""Camera-aware proxies: construction from (cluster, camera) pairs, lookup, momentum update."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from unreid.memory.camera_proxy_memory import CameraProxyMemory

LABELS = torch.tensor([0, 0, 1, 1, 1, -1, 2, 0, 2])
CAMERAS = torch.tensor([0, 1, 1, 1, 2, 0, 0, 0, 0])


def features(n: int = 9, d: int = 5, seed: int = 0) -> torch.Tensor:
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=1)


def test_proxies_are_per_camera_cluster_means_in_camera_major_order():
    x = features()
    mem = CameraProxyMemory(5)
    mem.reset(x, LABELS, CAMERAS)
    # brute force: every (cluster, camera) pair with a clustered image, sorted by camera then cluster
    pairs = sorted({(int(c), int(y)) for y, c in zip(LABELS, CAMERAS, strict=True) if y >= 0})
    assert mem.num_proxies == len(pairs) == 5
    for row, (cam, cluster) in enumerate(pairs):
        members = [i for i in range(9) if LABELS[i] == cluster and CAMERAS[i] == cam]
        want = F.normalize(x[members].sum(0), dim=0)
        torch.testing.assert_close(mem.bank[row], want)
        assert int(mem.proxy_cluster[row]) == cluster and int(mem.proxy_camera[row]) == cam
        assert int(mem.lookup[cluster, cam]) == row
    assert int(mem.lookup[1, 0]) == -1  # cluster 1 never seen by camera 0
    assert mem.proxy_of(torch.tensor([0, 1, 2]), torch.tensor([1, 2, 0])).tolist() == [
        pairs.index((1, 0)),
        pairs.index((2, 1)),
        pairs.index((0, 2)),
    ]


def test_proxy_of_rejects_pairs_without_a_proxy():
    mem = CameraProxyMemory(5)
    mem.reset(features(), LABELS, CAMERAS)
    with pytest.raises(ValueError, match="cluster 1 has no image in camera 0"):
        mem.proxy_of(torch.tensor([1]), torch.tensor([0]))
    with pytest.raises(ValueError, match="outside this epoch's proxies"):
        mem.proxy_of(torch.tensor([7]), torch.tensor([0]))


def test_update_moves_only_the_samples_own_proxies_in_order():
    x = features()
    mem = CameraProxyMemory(5, momentum=0.2)
    mem.reset(x, LABELS, CAMERAS)
    before = mem.bank.clone()
    batch = features(3, seed=1)
    targets, cams = torch.tensor([0, 0, 2]), torch.tensor([1, 1, 0])
    mem.update(batch, targets, cams)
    want = before.clone()
    for xi, y, c in zip(batch, targets, cams, strict=True):  # sequential, batch order
        r = int(mem.lookup[y, c])
        want[r] = F.normalize(0.2 * want[r] + 0.8 * xi, dim=0)
    torch.testing.assert_close(mem.bank, want)
    untouched = [
        r for r in range(mem.num_proxies) if r not in (int(mem.lookup[0, 1]), int(mem.lookup[2, 0]))
    ]
    torch.testing.assert_close(mem.bank[untouched], before[untouched])


def test_state_dict_round_trips_across_epoch_sizes():
    a = CameraProxyMemory(5)
    a.reset(features(), LABELS, CAMERAS)
    b = CameraProxyMemory(5)
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(b.bank, a.bank)
    assert torch.equal(b.lookup, a.lookup) and torch.equal(b.proxy_camera, a.proxy_camera)


def test_reset_rejects_bad_input():
    mem = CameraProxyMemory(5)
    with pytest.raises(ValueError, match="every label is -1"):
        mem.reset(features(), torch.full((9,), -1), CAMERAS)
    with pytest.raises(ValueError, match="cameras must have shape"):
        mem.reset(features(), LABELS, CAMERAS[:4])
    with pytest.raises(ValueError, match="camera ids must be >= 0"):
        mem.reset(features(), LABELS, CAMERAS - 1)
