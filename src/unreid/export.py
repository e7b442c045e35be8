"""Take a trained model elsewhere: ONNX (dynamic batch) or weights-only safetensors.

A `.pth` checkpoint is a pickle that needs torch and this package to open, and
holds the optimizer and memories too. Deployment wants the weights alone
(safetensors: no code runs on load) or a graph any runtime executes (ONNX).
Both carry the preprocessing, since the exported model is useless without it.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from unreid.inference import (
    CONFIG_METADATA_KEY,
    ReidEmbedder,
    export_config_path,
    load_model,
)

__all__ = ["FORMATS", "export_model", "export_onnx", "export_safetensors", "onnx_features"]

FORMATS = ("onnx", "safetensors")
ONNX_INPUT, ONNX_OUTPUT = "images", "features"


def export_safetensors(embedder: ReidEmbedder, out: str | Path) -> list[Path]:
    """`out` (.safetensors, the model's state dict) and its config beside it (`.yaml`).

    The config is also stored in the file's header, so a file copied alone still loads.
    """
    from safetensors.torch import save_file

    out = Path(out)
    config = embedder.config.to_dict()
    state = {k: v.detach().cpu().contiguous() for k, v in embedder.model.state_dict().items()}
    save_file(state, str(out), metadata={CONFIG_METADATA_KEY: json.dumps(config)})
    beside = export_config_path(out)
    beside.write_text(yaml.safe_dump(config, sort_keys=False))
    return [out, beside]


def export_onnx(embedder: ReidEmbedder, out: str | Path, opset: int = 17) -> list[Path]:
    """`out` (.onnx): input `images` (N, 3, H, W) preprocessed, output `features` (N, D).

    The batch axis is dynamic; the preprocessing is recorded in the model's metadata
    (`unreid_preprocessing`). Uses torch's TorchScript-based exporter, which needs no
    package beyond `onnx` (the newer torch.export-based one also needs onnxscript).
    """
    import onnx

    out = Path(out)
    pre = embedder.preprocessing
    model = embedder.model.to("cpu").eval()
    example = torch.zeros(2, 3, pre.height, pre.width)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            (example,),
            str(out),
            dynamo=False,
            input_names=[ONNX_INPUT],
            output_names=[ONNX_OUTPUT],
            dynamic_axes={ONNX_INPUT: {0: "batch"}, ONNX_OUTPUT: {0: "batch"}},
            opset_version=opset,
        )
    embedder.to(embedder.device)  # back where it was
    proto = onnx.load(str(out))
    meta = {
        "unreid_preprocessing": json.dumps(pre.as_dict()),
        "unreid_feature_dim": str(embedder.feature_dim),
        "unreid_source": embedder.source,
    }
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    onnx.save(proto, str(out))
    return [out]


def onnx_features(path: str | Path, batch: torch.Tensor | np.ndarray) -> np.ndarray:
    """ONNX Runtime's output for a preprocessed (N, 3, H, W) batch, on the CPU."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = batch.numpy() if isinstance(batch, torch.Tensor) else np.asarray(batch)
    return session.run([ONNX_OUTPUT], {ONNX_INPUT: x.astype(np.float32)})[0]


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
