"""ICE's three losses (Chen et al., ICCV 2021) as pure functions.

- `ice_proxy_nce`: camera-aware proxy contrast. Each sample is pulled to every
  proxy (cluster × camera centroid) of its own cluster, against the
  `hard_negatives` proxies of other clusters most similar to it.
- `ice_hard_instance_nce`: hard instance contrast inside the batch. The
  student's feature of one view is contrasted with the mean teacher's features
  of the other view: the least similar same-cluster teacher feature is the
  positive, every other cluster's teacher features are negatives.
- `ice_soft_consistency`: soft instance consistency. The teacher's
  similarity distribution among the weakly augmented views is the soft target
  for the student's (strong view) against the teacher's (other strong view).

The teacher's side carries no gradient (it is a mean teacher's output), so each
function detaches it; only the student's features are trained.
"""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F
from torch import Tensor

from unreid.losses.camera_proxy_nce import hard_negative_proxy_terms
from unreid.losses.checks import check_ids, check_loss_inputs, check_shape

__all__ = ["PROXY_REDUCTIONS", "ice_hard_instance_nce", "ice_proxy_nce", "ice_soft_consistency"]

PROXY_REDUCTIONS = ("mean", "per_camera_sum")
"""How the per-sample proxy terms become one number: the mean over the batch (the
paper's expectation), or the ICE code's sum over cameras of each camera's mean."""


def ice_proxy_nce(
    x: Tensor,
    targets: Tensor,
    cameras: Tensor,
    bank: Tensor,
    proxy_cluster: Tensor,
    temperature: float = 0.07,
    hard_negatives: int = 50,
    reduction: str = "mean",
) -> Tensor:
    """Camera-aware proxy contrast over the proxy `bank` (P, D).

    Per sample, with P⁺ every proxy of its cluster (all cameras, its own included)
    and Q the `hard_negatives` proxies of other clusters most similar to it
    (chosen on detached similarities; fewer if fewer exist):

        ℓ = -1/|P⁺| Σ_{p∈P⁺} log( exp(s_p/τ) / Σ_{u ∈ P⁺ ∪ Q} exp(s_u/τ) ),  s = ⟨x̂, p⟩

    `reduction="mean"` averages ℓ over the batch; `"per_camera_sum"` sums, over the
    cameras present, the mean of ℓ over that camera's samples (the ICE code's
    loop). Every sample's cluster must have a proxy (it does when the bank was
    built from this epoch's clusters).
    """
    # cluster ids are checked against the proxy count (every cluster has a proxy, so C <= P)
    check_loss_inputs(x, targets, bank, temperature=temperature)
    check_shape("cameras", cameras, (x.shape[0],))
    check_shape("proxy_cluster", proxy_cluster, (bank.shape[0],))
    if hard_negatives < 1:
        raise ValueError(f"hard_negatives must be >= 1, found {hard_negatives}")
    if reduction not in PROXY_REDUCTIONS:
        raise ValueError(f"reduction must be one of {PROXY_REDUCTIONS}, found {reduction!r}")
    pos = proxy_cluster.view(1, -1) == targets.view(-1, 1)
    per_sample, valid = hard_negative_proxy_terms(x, bank, pos, pos, temperature, hard_negatives)
    if not bool(valid.all()):
        i = int((~valid).nonzero()[0])
        raise ValueError(f"cluster {int(targets[i])} has no proxy in the bank")
    if reduction == "mean":
        return per_sample.mean()
    _, slot, counts = torch.unique(cameras, return_inverse=True, return_counts=True)
    return (per_sample / counts[slot].to(per_sample.dtype)).sum()


def ice_hard_instance_nce(
    student: Tensor, teacher: Tensor, targets: Tensor, temperature: float = 0.1
) -> Tensor:
    """Hard instance contrast of the student's views against the teacher's other views.

    `student[i]` and `teacher[i]` are two augmented views of image i; `targets`
    its cluster. With s_ij = ⟨ŝ_i, t̂_j⟩, positives j: y_j = y_i (i itself
    included), negatives j: y_j ≠ y_i:

        ℓ_i = -log( exp(s_ih/τ) / (exp(s_ih/τ) + Σ_{j neg} exp(s_ij/τ)) ),
        h = argmin_{j pos} s_ij   (the hardest positive)

    averaged over the batch. A batch of one cluster has no negatives: ℓ = 0.
    """
    _check_views(student, teacher, targets, temperature)
    sims = F.normalize(student, dim=1) @ F.normalize(teacher.detach(), dim=1).T
    same = targets.view(-1, 1) == targets.view(1, -1)
    hardest = sims.masked_fill(~same, float("inf")).amin(dim=1, keepdim=True)
    negatives = (sims / temperature).masked_fill(same, float("-inf"))
    logits = torch.cat([hardest / temperature, negatives], dim=1)
    return (torch.logsumexp(logits, dim=1) - logits[:, 0]).mean()


def ice_soft_consistency(
    student: Tensor, teacher: Tensor, teacher_weak: Tensor, temperature: float = 0.4
) -> Tensor:
    """KL(Q ‖ P) averaged over the batch: the weak view's similarities teach the strong view's.

    P_i = softmax_j(⟨ŝ_i, t̂_j⟩/τ): the student's strong view of image i against
    the teacher's other strong view of every image j; Q_i = softmax_j(⟨ŵ_i, ŵ_j⟩/τ)
    among the teacher's weakly augmented views. No labels: the targets are the
    teacher's own inter-instance similarities.
    """
    rows = torch.zeros(_rows(student), dtype=torch.long)
    _check_views(student, teacher, rows, temperature)
    check_shape("teacher_weak", teacher_weak, tuple(student.shape))
    t = F.normalize(teacher.detach(), dim=1)
    w = F.normalize(teacher_weak.detach(), dim=1)
    log_p = F.log_softmax(F.normalize(student, dim=1) @ t.T / temperature, dim=1)
    log_q = F.log_softmax(w @ w.T / temperature, dim=1)
    return (log_q.exp() * (log_q - log_p)).sum(dim=1).mean()


def _rows(x: object) -> int:
    return x.shape[0] if isinstance(x, Tensor) and x.dim() == 2 else 0


def _check_views(student: Tensor, teacher: Tensor, targets: Tensor, temperature: float) -> None:
    """The shared check with the teacher's rows as the bank: row i is image i's other view."""
    if _rows(student):
        check_shape("teacher", teacher, tuple(student.shape))
    own_rows = torch.arange(_rows(student))
    check_loss_inputs(student, own_rows, teacher, temperature=temperature, targets_name="rows")
    check_ids("targets", targets, sys.maxsize, "cluster ids", length=student.shape[0])
