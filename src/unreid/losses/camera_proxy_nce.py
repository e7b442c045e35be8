"""CAP's two proxy losses (Wang et al., AAAI 2021) as pure functions.

Both read a bank of camera-aware proxies (rows = (cluster, camera) pairs, see
memory/camera_proxy_memory.py) and reduce as the reference does: a mean over
the batch samples of each camera, summed over the cameras present in the
batch. A batch spanning six cameras therefore weighs about six times a plain
per-sample mean; that is the published recipe the weights were tuned with.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from unreid.losses.checks import check_loss_inputs, check_shape

__all__ = ["intra_camera_nce", "inter_camera_nce"]

_POSITIVES = ("other_cameras", "all")


def _per_camera_sum(values: Tensor, cameras: Tensor, valid: Tensor) -> Tensor:
    """Σ over cameras of the mean of `values` over that camera's valid samples."""
    cams = torch.where(valid, cameras, -1)
    _, slot, counts = torch.unique(cams, return_inverse=True, return_counts=True)
    weights = valid.to(values.dtype) / counts[slot].to(values.dtype)
    return (torch.where(valid, values, 0.0) * weights).sum()


def intra_camera_nce(
    x: Tensor,
    proxy_rows: Tensor,
    cameras: Tensor,
    bank: Tensor,
    proxy_camera: Tensor,
    temperature: float = 0.07,
) -> Tensor:
    """Cross-entropy of each sample against the proxies of its own camera only.

    `proxy_rows` is each sample's own proxy row; the softmax runs over the rows
    whose `proxy_camera` equals the sample's camera, so identities are told
    apart within a camera without fighting the camera's own style.
    """
    check_loss_inputs(x, proxy_rows, bank, temperature=temperature, targets_name="proxy_rows")
    check_shape("cameras", cameras, (x.shape[0],))
    check_shape("proxy_camera", proxy_camera, (bank.shape[0],))
    if bool((proxy_camera[proxy_rows] != cameras).any()):
        raise ValueError("a sample's proxy row belongs to another camera")
    logits = F.normalize(x, dim=1) @ bank.to(x.dtype).T / temperature
    other_camera = proxy_camera.view(1, -1) != cameras.view(-1, 1)
    logits = logits.masked_fill(other_camera, float("-inf"))
    ce = F.cross_entropy(logits, proxy_rows.long(), reduction="none")
    return _per_camera_sum(ce, cameras, torch.ones_like(cameras, dtype=torch.bool))


def inter_camera_nce(
    x: Tensor,
    targets: Tensor,
    cameras: Tensor,
    bank: Tensor,
    proxy_cluster: Tensor,
    proxy_camera: Tensor,
    temperature: float = 0.07,
    hard_negatives: int = 50,
    positives: str = "other_cameras",
) -> Tensor:
    """Pull a sample to its cluster's proxies in other cameras, against the hardest others.

    Per sample, with P its positive proxies and Q the `hard_negatives` proxies of
    other clusters most similar to it (chosen on detached similarities):

        loss = -1/|P| Σ_{p∈P} log( exp(s_p/τ) / Σ_{u ∈ P ∪ Q} exp(s_u/τ) )

    `positives="all"` counts the sample's own-camera proxy as a positive too
    (the reference code); with `"other_cameras"` a cluster seen by one camera
    only gives its samples no term, and the own-camera proxy is neither
    positive nor negative.
    """
    # cluster ids are checked against the proxy count (every cluster has a proxy, so C <= P)
    check_loss_inputs(x, targets, bank, temperature=temperature)
    check_shape("cameras", cameras, (x.shape[0],))
    check_shape("proxy_cluster", proxy_cluster, (bank.shape[0],))
    check_shape("proxy_camera", proxy_camera, (bank.shape[0],))
    if hard_negatives < 1:
        raise ValueError(f"hard_negatives must be >= 1, found {hard_negatives}")
    if positives not in _POSITIVES:
        raise ValueError(f"positives must be one of {_POSITIVES}, found {positives!r}")
    same = proxy_cluster.view(1, -1) == targets.view(-1, 1)
    pos = same
    if positives == "other_cameras":
        pos = same & (proxy_camera.view(1, -1) != cameras.view(-1, 1))
    per_sample, valid = hard_negative_proxy_terms(x, bank, same, pos, temperature, hard_negatives)
    return _per_camera_sum(per_sample, cameras, valid)


def hard_negative_proxy_terms(
    x: Tensor, bank: Tensor, same: Tensor, pos: Tensor, temperature: float, hard_negatives: int
) -> tuple[Tensor, Tensor]:
    """Per-sample -1/|P| Σ_{p∈P} log softmax over P ∪ (the k hardest proxies not `same`).

    `same` (B, P) marks the proxies of a sample's own cluster (never negatives), `pos`
    the positives among them. Returns (per-sample loss, rows with a positive); rows
    without one are 0 and must be left out by the caller. Shared by CAP's inter-camera
    term and ICE's proxy term, which differ only in which proxies are positives.
    """
    sims = F.normalize(x, dim=1) @ bank.to(x.dtype).T
    logits = sims / temperature
    k = min(hard_negatives, bank.shape[0])
    neg_sims, neg_idx = sims.detach().masked_fill(same, float("-inf")).topk(k, dim=1)
    # fewer than k other-cluster proxies: the surplus picks are own-cluster ones, dropped
    neg_logits = logits.gather(1, neg_idx).masked_fill(torch.isinf(neg_sims), float("-inf"))
    pos_logits = logits.masked_fill(~pos, float("-inf"))
    n_pos = pos.sum(dim=1)
    valid = n_pos > 0
    # rows without a positive get finite dummies: they are dropped by the caller, and an
    # all -inf logsumexp would send NaN through the backward pass
    terms = torch.cat([pos_logits, neg_logits], dim=1).masked_fill(~valid.view(-1, 1), 0.0)
    lse = torch.logsumexp(terms, dim=1, keepdim=True)
    log_prob = torch.where(pos, logits - lse, 0.0)
    return -log_prob.sum(dim=1) / n_pos.clamp(min=1), valid
