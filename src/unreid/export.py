"""Take a trained model elsewhere: ONNX (dynamic batch) or weights-only safetensors.

A `.pth` checkpoint is a pickle that needs torch and this package to open, and
holds the optimizer and memories too. Deployment wants the weights alone
(safetensors: no code runs on load) or a graph any runtime executes (ONNX).
Both carry the preprocessing, since the exported model is useless without it.

A transformer with a camera embedding computes other features for another camera
id, so its ONNX graph takes the ids as a second input, `cameras` (int64, (N,),
0..C-1 as in training; C in the metadata `unreid_num_cameras`), rather than
baking one camera in: a runtime gets the features `load_model(...).embed(images,
cameras)` gives. The safetensors file keeps the table, whose rows say C.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from unreid.checkpoint import save_safetensors
from unreid.inference import (
    CONFIG_METADATA_KEY,
    ReidEmbedder,
    export_config_path,
    load_model,
)
from unreid.models.vit import camera_ids

__all__ = ["FORMATS", "export_model", "export_onnx", "export_safetensors", "onnx_features"]

FORMATS = ("onnx", "safetensors")
ONNX_INPUT, ONNX_OUTPUT = "images", "features"
ONNX_CAMERAS = "cameras"


class CamerasAsInput(nn.Module):
    """`model` with its camera ids as a forward argument, which is what tracing can export
    (the `camera_ids` block around the call becomes a graph input)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor, cameras: torch.Tensor) -> torch.Tensor:
        with camera_ids(self.model, cameras):
            return self.model(images)


def export_safetensors(embedder: ReidEmbedder, out: str | Path) -> list[Path]:
    """`out` (.safetensors, the model's state dict) and its config beside it (`.yaml`).

    The config is also stored in the file's header, so a file copied alone still loads.
    """
    out = Path(out)
    config = embedder.config.to_dict()
    state = {k: v.detach().cpu().contiguous() for k, v in embedder.model.state_dict().items()}
    save_safetensors(out, state, metadata={CONFIG_METADATA_KEY: json.dumps(config)})
    beside = export_config_path(out)
    beside.write_text(yaml.safe_dump(config, sort_keys=False))
    return [out, beside]


def export_onnx(embedder: ReidEmbedder, out: str | Path, opset: int = 17) -> list[Path]:
    """`out` (.onnx): input `images` (N, 3, H, W) preprocessed, output `features` (N, D).

    A camera-embedding model takes `cameras` (N,) int64 too (see the module doc). The
    batch axis is dynamic; the preprocessing is recorded in the model's metadata
    (`unreid_preprocessing`). Uses torch's TorchScript-based exporter, which needs no
    package beyond `onnx` (the newer torch.export-based one also needs onnxscript).
    """
    import onnx

    out = Path(out)
    pre = embedder.preprocessing
    model = embedder.model.to("cpu").eval()
    example: tuple[torch.Tensor, ...] = (torch.zeros(2, 3, pre.height, pre.width),)
    inputs = [ONNX_INPUT]
    if embedder.num_cameras:
        model = CamerasAsInput(model)
        example = (*example, torch.zeros(2, dtype=torch.int64))
        inputs.append(ONNX_CAMERAS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        # the traced checks (input size, camera range) hold for the example, by design:
        # the graph is built for one input size; camera ids >= C fail in Gather, and
        # negative ones count from the end there (numpy's rule), which onnx_features refuses
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # IBN's InstanceNorm keeps no running statistics: per-image ones are right in eval too
        warnings.filterwarnings("ignore", "ONNX export mode.*'instance_norm'", UserWarning)
        torch.onnx.export(
            model,
            example,
            str(out),
            dynamo=False,
            input_names=inputs,
            output_names=[ONNX_OUTPUT],
            dynamic_axes={name: {0: "batch"} for name in (*inputs, ONNX_OUTPUT)},
            opset_version=opset,
        )
    embedder.to(embedder.device)  # back where it was
    proto = onnx.load(str(out))
    meta = {
        "unreid_preprocessing": json.dumps(pre.as_dict()),
        "unreid_feature_dim": str(embedder.feature_dim),
        "unreid_num_cameras": str(embedder.num_cameras),
        "unreid_source": embedder.source,
    }
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    onnx.save(proto, str(out))
    return [out]


def onnx_features(
    path: str | Path,
    batch: torch.Tensor | np.ndarray,
    cameras: torch.Tensor | np.ndarray | list[int] | None = None,
) -> np.ndarray:
    """ONNX Runtime's output for a preprocessed (N, 3, H, W) batch, on the CPU.

    `cameras` (N,) feeds a graph with a `cameras` input, checked against the C of its
    metadata (ONNX's Gather would take a negative id as counting from the end); such a
    graph without them, or cameras given to one without the input, is an error.
    """
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = batch.numpy() if isinstance(batch, torch.Tensor) else np.asarray(batch)
    feeds = {ONNX_INPUT: x.astype(np.float32)}
    wants = ONNX_CAMERAS in {i.name for i in session.get_inputs()}
    if wants != (cameras is not None):
        raise ValueError(
            f"{path}: the model has a camera embedding: pass cameras=(one id per image)"
            if wants
            else f"{path}: the model has no '{ONNX_CAMERAS}' input; leave cameras out"
        )
    if cameras is not None:
        ids = cameras.numpy() if isinstance(cameras, torch.Tensor) else np.asarray(cameras)
        meta = session.get_modelmeta().custom_metadata_map
        count = int(meta.get("unreid_num_cameras", ids.max(initial=0) + 1))
        if ids.size and (ids.min() < 0 or ids.max() >= count):
            raise ValueError(
                f"{path}: camera ids {ids.min()}..{ids.max()} outside its {count} cameras"
            )
        feeds[ONNX_CAMERAS] = ids.astype(np.int64)
    return session.run([ONNX_OUTPUT], feeds)[0]


def export_model(
    checkpoint: str | Path, fmt: str, out: str | Path | None = None, **options: Any
) -> list[Path]:
    """Export `checkpoint` to `fmt`; `out` defaults to the checkpoint's path, new suffix."""
    if fmt not in FORMATS:
        raise ValueError(f"export format must be one of {', '.join(FORMATS)}, found {fmt!r}")
    checkpoint = Path(checkpoint)
    target = Path(out) if out is not None else checkpoint.with_suffix(f".{fmt}")
    if target.suffix != f".{fmt}":
        raise ValueError(f"export --out {target}: expected a .{fmt} file name for --format {fmt}")
    if target.resolve() == checkpoint.resolve():
        raise ValueError(f"export --out {target} would overwrite the checkpoint it reads")
    target.parent.mkdir(parents=True, exist_ok=True)
    embedder = load_model(checkpoint, device="cpu")
    if fmt == "onnx":
        return export_onnx(embedder, target, **options)
    return export_safetensors(embedder, target)
