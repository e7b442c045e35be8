"""Mixed precision, memory format, TF32 and torch.compile for the training step and extraction.

Only the network's forward runs in reduced precision. Everything downstream of
it, memories, losses, clustering, evaluation, needs fp32: a memory bank
updated in bf16 drifts (momentum 0.1-0.2 updates are below bf16's resolution
near unit norm) and Jaccard distances on half-precision features tie. So
`Precision.forward` returns `.float()` features, computed outside the
autocast region, and the weights and optimizer state stay fp32 (autocast casts
per op). fp16 overflows where bf16 does not, so it needs a `GradScaler`, which
`backward_step` drives: scale, unscale, skip the step when a gradient is
inf/NaN, adjust the scale.

`train.amp` names: "auto" (bf16 on a GPU that supports it, fp16 on an older
GPU, off on a CPU, where bf16 is slower than fp32 without AMX and CPU runs are
the small ones), "bf16", "fp16" (both allowed on CPU too, which is how the
tests exercise them), "off".
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = [
    "AMP_SETTINGS",
    "Precision",
    "prepare_model",
    "resolve_amp",
    "set_tf32",
    "to_device",
]

AMP_SETTINGS = ("auto", "bf16", "fp16", "off")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _device(device: torch.device | str) -> torch.device:
    return device if isinstance(device, torch.device) else torch.device(device)


def resolve_amp(name: str, device: torch.device | str, key: str = "train.amp") -> str:
    """The precision `name` means on `device`: "bf16", "fp16" or "off"."""
    if name not in AMP_SETTINGS:
        raise ValueError(f"{key}={name!r}: must be one of {', '.join(AMP_SETTINGS)}")
    kind = _device(device).type
    if name == "auto":
        if kind != "cuda":
            return "off"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if name == "bf16" and kind == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"{key}='bf16': this GPU does not support bf16; use 'fp16' or 'auto'")
    return name


@dataclass
class Precision:
    """How the forward pass runs and how a loss becomes an optimizer step."""

    mode: str  # "bf16", "fp16" or "off" (resolved; see `resolve_amp`)
    device_type: str  # "cuda", "cpu", ...
    scaler: torch.amp.GradScaler | None = None  # fp16 only

    @classmethod
    def from_setting(cls, name: str, device: torch.device | str) -> Precision:
        mode = resolve_amp(name, device)
        kind = _device(device).type
        scaler = torch.amp.GradScaler(kind) if mode == "fp16" else None
        return cls(mode, kind, scaler)

    @property
    def dtype(self) -> torch.dtype | None:
        """The autocast dtype, None when off."""
        return _DTYPES.get(self.mode)

    def autocast(self) -> contextlib.AbstractContextManager:
        """The region where ops run in the reduced dtype (a no-op when off)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def forward(self, model: nn.Module, images: torch.Tensor) -> torch.Tensor:
        """`model(images)` under autocast, returned as fp32 for memories, losses, clustering."""
        with self.autocast():
            out = model(images)
        return out.float()

    def backward_step(
        self,
        loss: torch.Tensor,
        optimizer: torch.optim.Optimizer,
        before_step: Callable[[], None] | None = None,
    ) -> bool:
        """zero_grad, backward, step; False when fp16 found inf/NaN gradients and skipped it.

        `before_step` runs between backward and step, e.g. averaging the
        gradients DDP does not manage (with fp16 they are still scaled then,
        which averaging does not mind). The skip check reads the scale back
        from the device (one sync per step, which the loop's `loss.item()`
        makes anyway).
        """
        optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            if before_step is not None:
                before_step()
            optimizer.step()
            return True
        self.scaler.scale(loss).backward()
        if before_step is not None:
            before_step()
        before = self.scaler.get_scale()
        self.scaler.step(optimizer)  # unscales first; skipped on inf/NaN
        self.scaler.update()
        return self.scaler.get_scale() >= before

    def state_dict(self) -> dict[str, Any]:
        """The scaler's state (empty without one), to checkpoint beside the optimizer."""
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)


def prepare_model(
    model: nn.Module,
    channels_last: bool = False,
    compile: bool = False,
    wrap: Callable[[nn.Module], nn.Module] | None = None,
    backend: str = "inductor",
) -> nn.Module:
    """The module to call for forward passes: channels_last weights, wrapped, compiled.

    The order is the one each step needs: channels_last is applied to `model`
    in place before DDP (`wrap`, e.g. `DistContext.wrap`) registers the
    parameters' layout, and compilation goes around the wrapped module, as
    torch recommends for DDP. Convolutions on NHWC run faster on tensor cores;
    the inputs should match (see `to_device`). A wrapped or compiled module
    prefixes the state-dict keys (`module.`, `_orig_mod.`), so save and load
    checkpoints through `model`, not the returned module.
    """
    if channels_last:
        model.to(memory_format=torch.channels_last)
    runner = wrap(model) if wrap is not None else model
    if compile:
        return torch.compile(runner, backend=backend)  # type: ignore[return-value]
    return runner


def to_device(
    images: torch.Tensor, device: torch.device | str, channels_last: bool = False
) -> torch.Tensor:
    """A batch moved to `device` (asynchronously from pinned memory) in the model's layout."""
    fmt = torch.channels_last if channels_last and images.dim() == 4 else torch.preserve_format
    return images.to(device, non_blocking=True, memory_format=fmt)


def set_tf32(enabled: bool) -> None:
    """TensorFloat-32 for fp32 matmuls and convolutions on Ampere+ GPUs (no effect on CPU).

    TF32 keeps fp32's range with a 10-bit mantissa, which an fp32 run's
    convolutions can afford; torch >= 2.9 has a per-backend setting and
    refuses a mix with the legacy `allow_tf32` flags, so the new one is used
    when it exists.
    """
    cublas, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    if hasattr(cudnn, "conv") and hasattr(cublas, "fp32_precision"):
        value = "tf32" if enabled else "ieee"
        cublas.fp32_precision = value
        cudnn.conv.fp32_precision = value
    else:  # pragma: no cover - torch < 2.9
        cublas.allow_tf32 = enabled
        cudnn.allow_tf32 = enabled
