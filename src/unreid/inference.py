"""Embed one's own images with a trained model, outside the training loop.

A re-ID model is only as good as the preprocessing it sees: a wrong image size
or normalisation degrades features silently rather than failing. So the size
comes from the config the checkpoint (or a safetensors export) carries, never
from a default, and every input kind (path, PIL image, uint8 tensor) goes
through the very transform evaluation uses.

What an inference checkpoint (`best.pth`) holds is decided here, beside the
code that reads it: the weights, the config, the preprocessing spelled out (so
a reader without this package knows the input size and normalisation), and the
epoch and scores it was chosen at. No optimizer or memories: they are twice
the model's size and only a resume needs them (`last.pth`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms.functional import to_pil_image
from tqdm import tqdm

from unreid.checkpoint import INFERENCE, inference_state, load_checkpoint
from unreid.config import Config, config_from_dict
from unreid.data.decode import to_rgb
from unreid.data.image_dataset import read_image
from unreid.data.transforms import IMAGENET_MEAN, IMAGENET_STD, test_transform
from unreid.errors import ConfigError
from unreid.models.reid_model import model_for_state
from unreid.models.vit import camera_ids

__all__ = [
    "CameraInput",
    "ImageInput",
    "Preprocessing",
    "ReidEmbedder",
    "inference_checkpoint",
    "load_model",
]

ImageInput = str | Path | Image.Image | torch.Tensor
# One camera index for every image, or one per image (a sequence, array or (N,) tensor).
CameraInput = int | Sequence[int] | torch.Tensor
CONFIG_METADATA_KEY = "unreid_config"


@dataclass(frozen=True)
class Preprocessing:
    """What the model expects: resize to height x width (bicubic), ImageNet mean/std."""

    height: int
    width: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def transform(self) -> Any:
        return test_transform(self.height, self.width)

    def as_dict(self) -> dict[str, Any]:
        return {
            "height": self.height,
            "width": self.width,
            "interpolation": "bicubic",
            "mean": list(self.mean),
            "std": list(self.std),
            "layout": "NCHW float32, RGB",
        }

    @classmethod
    def of_config(cls, cfg: Config) -> Preprocessing:
        return cls(cfg.data.height, cfg.data.width)

    def check_record(self, record: Any, source: str) -> None:
        """Refuse a checkpoint whose recorded preprocessing is not the one `transform` applies.

        Embedding with another size or normalisation than the model learnt on gives
        worse features without any error, so a disagreement stops here instead.
        """
        if record is None:
            return  # written before preprocessing was recorded: the config alone says it
        ours = self.as_dict()
        if not isinstance(record, dict):
            raise ConfigError(f"{source}: 'preprocessing' is not a mapping ({record!r})")
        diffs = [
            f"{k}: file {record.get(k)!r}, applied {v!r}"
            for k, v in ours.items()
            if record.get(k) != v
        ]
        if diffs:
            raise ConfigError(
                f"{source}: the model expects other preprocessing than this package applies "
                f"({'; '.join(diffs)}); its features would be wrong"
            )


def inference_checkpoint(
    model: dict[str, torch.Tensor],
    cfg: Config,
    state: dict[str, Any],
    scores: dict[str, dict[str, float]],
) -> dict[str, Any]:
    """What `best.pth` holds: all `load_model` and `unreid eval` need, nothing to resume."""
    return {
        "kind": INFERENCE,
        "model": model,
        "config": cfg.to_dict(),
        "preprocessing": Preprocessing.of_config(cfg).as_dict(),
        "state": dict(state),
        "scores": scores,
    }


def to_pil(image: ImageInput, where: str) -> Image.Image:
    """One image as RGB PIL; a uint8 (3, H, W) tensor is read as torchvision does."""
    if isinstance(image, (str, Path)):
        return read_image(str(image))
    if isinstance(image, Image.Image):
        return to_rgb(image, where)
    if isinstance(image, torch.Tensor):
        if image.dtype != torch.uint8:
            raise ValueError(
                f"{where}: expected a uint8 image tensor (0..255), found dtype {image.dtype}; "
                "float tensors are ambiguous about their scale, convert them first"
            )
        if image.ndim != 3 or image.shape[0] not in (1, 3):
            raise ValueError(
                f"{where}: expected a (3, H, W) or (1, H, W) uint8 tensor, "
                f"found shape {tuple(image.shape)}"
            )
        return to_pil_image(image.cpu()).convert("RGB")
    raise TypeError(
        f"{where}: expected a path, a PIL image or a uint8 tensor, found {type(image).__name__}"
    )


def as_image_list(images: ImageInput | Sequence[ImageInput]) -> list[ImageInput]:
    """A single image, a (N, 3, H, W) uint8 batch or a sequence of images, as a flat list."""
    if isinstance(images, (str, Path, Image.Image)):
        return [images]
    if isinstance(images, torch.Tensor):
        if images.ndim == 4:
            return list(images)
        return [images]
    return list(images)


class _Images(Dataset):
    def __init__(self, items: list[ImageInput], transform: Any) -> None:
        self.items = items
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.transform(to_pil(self.items[index], f"image {index}"))


class ReidEmbedder:
    """A trained model bound to its preprocessing and a device: images in, unit vectors out."""

    def __init__(
        self, model: nn.Module, config: Config, source: str, device: torch.device | str
    ) -> None:
        self.config = config
        self.source = source
        self.preprocessing = Preprocessing.of_config(config)
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()

    @property
    def feature_dim(self) -> int:
        return self.model.feature_dim

    @property
    def num_cameras(self) -> int:
        """Rows of the model's camera embedding (its training cameras); 0 without one."""
        table = getattr(self.model, "camera_embed", None)
        return 0 if table is None else int(table.shape[0])

    def check_cameras(self, cameras: CameraInput | None, count: int) -> torch.Tensor | None:
        """`cameras` as (count,) int64 indices, checked; None for a model that ignores them.

        A camera-embedding model's features change with the camera id, so a missing or
        out-of-range id is an error rather than a guessed default. Other models accept
        and ignore cameras, so callers that know them can always pass them.
        """
        n = self.num_cameras
        if cameras is None:
            if n:
                mode = getattr(self.model, "camera_mode", "?")
                raise ValueError(
                    f"{self.source} has a camera embedding (model.camera_embedding={mode}, "
                    f"{n} training cameras): embed(images, cameras=...) needs the camera "
                    f"index (0..{n - 1}) of every image, or one index for all"
                )
            return None
        try:
            ids = torch.as_tensor(cameras)
        except (TypeError, ValueError, RuntimeError) as err:
            raise TypeError(
                f"cameras: expected an int or one int per image, found {cameras!r:.60}"
            ) from err
        if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
            raise TypeError(f"cameras: expected integer camera indices, found dtype {ids.dtype}")
        ids = ids.long().expand(count) if ids.ndim == 0 else ids.long()
        if ids.shape != (count,):
            raise ValueError(f"{count} images but {tuple(ids.shape)} camera ids")
        if n and count and (int(ids.min()) < 0 or int(ids.max()) >= n):
            raise ValueError(
                f"camera ids {int(ids.min())}..{int(ids.max())} outside the {n} cameras "
                f"{self.source} was trained with (0..{n - 1})"
            )
        return ids if n else None

    def to(self, device: torch.device | str) -> ReidEmbedder:
        self.device = torch.device(device)
        self.model.to(self.device)
        return self

    def preprocess(self, images: ImageInput | Sequence[ImageInput]) -> torch.Tensor:
        """The (N, 3, H, W) float batch the network sees (what an ONNX export takes)."""
        items = as_image_list(images)
        transform = self.preprocessing.transform()
        return torch.stack([transform(to_pil(x, f"image {i}")) for i, x in enumerate(items)])

    @torch.no_grad()
    def embed(
        self,
        images: ImageInput | Sequence[ImageInput],
        cameras: CameraInput | None = None,
        batch_size: int = 64,
        workers: int = 0,
        progress: bool = False,
    ) -> torch.Tensor:
        """(N, D) float32 L2-normalised features on the CPU, in input order.

        `cameras`: each image's camera index as the model was trained (0..C-1), or one
        index for all; required by a camera-embedding model, ignored by any other.
        """
        items = as_image_list(images)
        if not items:
            raise ValueError("embed: no images given")
        if batch_size < 1:
            raise ValueError(f"embed: batch_size must be >= 1, found {batch_size}")
        cams = self.check_cameras(cameras, len(items))
        loader = DataLoader(
            _Images(items, self.preprocessing.transform()),
            batch_size=batch_size,
            num_workers=workers,
            shuffle=False,
        )
        self.model.eval()
        chunks: list[torch.Tensor] = []
        done = 0
        for batch in tqdm(loader, desc="embed", leave=False, disable=not progress):
            rows = None if cams is None else cams[done : done + len(batch)]
            with camera_ids(self.model, rows):
                chunks.append(self.model(batch.to(self.device)).float().cpu())
            done += len(batch)
        return torch.cat(chunks)


def read_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], Any]:
    """(model state dict, config dict, recorded preprocessing or None) of a checkpoint of
    either kind or a safetensors export (whose preprocessing its config implies)."""
    if path.suffix == ".safetensors":
        return (*read_safetensors_export(path), None)
    ckpt = load_checkpoint(path)
    if (
        not isinstance(ckpt, dict)
        or not isinstance(ckpt.get("config"), dict)
        or "model" not in ckpt
    ):
        raise ConfigError(
            f"{path}: not an unreid checkpoint (expected a dict with 'model' and 'config' "
            f"entries, found {sorted(ckpt) if isinstance(ckpt, dict) else type(ckpt).__name__})"
        )
    return inference_state(ckpt), ckpt["config"], ckpt.get("preprocessing")


def export_config_path(weights: Path) -> Path:
    """Where the config of a safetensors export lies: beside it, same stem, `.yaml`."""
    return weights.with_suffix(".yaml")


def read_safetensors_export(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    import yaml
    from safetensors import safe_open
    from safetensors.torch import load_file

    if not path.is_file():
        raise FileNotFoundError(f"safetensors export {path} does not exist")
    beside = export_config_path(path)
    if beside.is_file():
        config = yaml.safe_load(beside.read_text())
        if not isinstance(config, dict):
            raise ConfigError(f"{beside}: expected a config mapping, found {type(config).__name__}")
    else:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        if CONFIG_METADATA_KEY not in meta:
            raise ConfigError(
                f"{path}: no config beside it ({beside} is missing) and none in its header "
                f"(metadata key '{CONFIG_METADATA_KEY}'); export it with `unreid export`"
            )
        config = json.loads(meta[CONFIG_METADATA_KEY])
    return load_file(str(path)), config


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_model(path: str | Path, device: torch.device | str | None = None) -> ReidEmbedder:
    """A trained model ready to embed images: `best.pth`/`last.pth` or a `.safetensors` export.

    `device` None takes the GPU when there is one. The model is built from the saved
    config (pretrained weights are not fetched: the saved weights replace them).
    """
    path = Path(path)
    state, config, recorded = read_weights(path)
    cfg = config_from_dict(config, origin=str(path))
    Preprocessing.of_config(cfg).check_record(recorded, str(path))
    cfg.model.pretrained = "none"
    # a transformer's grid follows the input size; its camera table's rows, the saved weights
    model = model_for_state(cfg.model, (cfg.data.height, cfg.data.width), state)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ConfigError(f"{path}: weights do not match the saved model config ({err})") from err
    return ReidEmbedder(model, cfg, str(path), device if device is not None else default_device())
