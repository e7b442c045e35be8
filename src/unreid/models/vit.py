"""Transformer re-ID networks: ViT-S/16, ViT-B/16 (TransReID-SSL family) and CLIP ViT-B/16.

The blocks are timm's `VisionTransformer`, so a timm, DINO or LUPerson state dict lands key
for key (`vit_weights.py` converts the other layouts into timm's). What re-ID adds around
them is built here, because timm has no place for it:

- Patch embedding with its own stride (TransReID's overlapping patches: kernel 16, stride
  12 gives 21x10 tokens at 256x128) or TransReID-SSL's ICS stem (7x7/2 conv + IBN, 3x3 +
  IBN, 3x3 + BN, then an 8x8/8 projection; key names `patch_embed.conv.N`, as published).
- A camera embedding (TransReID's side information): a learned [C, D] table added to every
  token times `camera_coef` (TransReID, 3.0) or to the class token only (CLIP-ReID, 1.0).
  The camera ids of a forward come from `camera_ids(model, cams)`, as DSBN's source rows
  do, so no caller's `model(images)` changes shape.
- A BN neck on the class token (bias frozen, as the ResNet neck); the embedding is the
  neck's output, L2-normalised: TransReID-SSL's unsupervised code clusters and ranks
  exactly this. CLIP's embedding is PCL-CLIP's: concat(BN(class token after ln_post, 768),
  BN(its 512-d projection)), L2-normalised.
- Pixel normalisation per weight family, inside the model: the data pipeline normalises
  every image with ImageNet statistics (as for the ResNets), and the trunk's first op maps
  that to its family's statistics, an exact per-channel affine map. So datasets, device
  augmentation, `load_model().embed`, export and search stay family-agnostic, and a model
  can never meet the wrong normalisation (fast-reid keeps pixel statistics in the model
  for the same reason). Random erasing's "zero" fill is the mean colour either way.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from unreid.models.ibn_resnet import IBN
from unreid.settings import ModelConfig

__all__ = [
    "PIXEL_STATS",
    "VIT_SPECS",
    "OverlapPatchEmbed",
    "VitReidModel",
    "VitSpec",
    "camera_ids",
    "grid_size",
]

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
# mean, std in [0, 1] pixel units, per `model.pixel_norm` name.
PIXEL_STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "imagenet": IMAGENET,
    "half": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),  # TransReID / TransReID-SSL `--self-norm`
    "luperson": ((0.3525, 0.3106, 0.3140), (0.2660, 0.2522, 0.2505)),  # TMGF's LUPerson stats
    "clip": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
}


@dataclass(frozen=True)
class VitSpec:
    """The shape of one transformer trunk; `clip` adds CLIP's pre-norm, QuickGELU and projection."""

    embed_dim: int
    depth: int
    heads: int
    pixel_norm: str  # the weight family's normalisation (`model.pixel_norm=auto`)
    clip: bool = False
    proj_dim: int = 0  # CLIP's image projection width

    @property
    def feature_dim(self) -> int:
        return self.embed_dim + self.proj_dim


VIT_SPECS = {
    "vit_tiny": VitSpec(192, 12, 3, "half"),  # DeiT-Ti shapes: CPU tests and benchmarks
    "vit_small": VitSpec(384, 12, 6, "half"),
    "vit_base": VitSpec(768, 12, 12, "half"),
    "clip_vit_b16": VitSpec(768, 12, 12, "clip", clip=True, proj_dim=512),
}


def grid_size(height: int, width: int, patch: int, stride: int) -> tuple[int, int]:
    """Tokens per column and row of a kernel-`patch` conv at `stride`, no padding."""
    if height < patch or width < patch:
        raise ValueError(f"input {height}x{width} is smaller than one {patch}x{patch} patch")
    return (height - patch) // stride + 1, (width - patch) // stride + 1


class OverlapPatchEmbed(nn.Module):
    """Images -> (B, tokens, D): one conv (any stride <= kernel) or the ICS stem + projection."""

    def __init__(
        self, size: tuple[int, int], embed_dim: int, stride: int = 16, stem: str = "patch",
        bias: bool = True, patch: int = 16,
    ) -> None:  # fmt: skip
        super().__init__()
        h, w = size
        if stem == "ics":  # stride 2 in the stem, then an 8x8/8 projection: 16x16 per token
            hidden = 64
            conv = partial(nn.Conv2d, bias=False)
            self.conv = nn.Sequential(
                conv(3, hidden, 7, 2, 3), IBN(hidden), nn.ReLU(inplace=True),
                conv(hidden, hidden, 3, 1, 1), IBN(hidden), nn.ReLU(inplace=True),
                conv(hidden, hidden, 3, 1, 1), nn.BatchNorm2d(hidden), nn.ReLU(inplace=True),
            )  # fmt: skip
            self.proj = nn.Conv2d(hidden, embed_dim, patch // 2, patch // 2, bias=bias)
            self.grid_size = (h // patch, w // patch)
        elif stem == "patch":
            self.conv = None
            self.proj = nn.Conv2d(3, embed_dim, patch, stride, bias=bias)
            self.grid_size = grid_size(h, w, patch, stride)
        else:
            raise ValueError(f"model.stem must be 'patch' or 'ics', found {stem!r}")
        self.img_size = (h, w)
        self.num_patches = self.grid_size[0] * self.grid_size[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != self.img_size:
            raise ValueError(
                f"the transformer was built for {self.img_size[0]}x{self.img_size[1]} images "
                f"(data.height x data.width), got {x.shape[-2]}x{x.shape[-1]}"
            )
        if self.conv is not None:
            x = self.conv(x)
        return self.proj(x).flatten(2).transpose(1, 2)


def build_trunk(spec: VitSpec, cfg: ModelConfig, size: tuple[int, int]) -> nn.Module:
    """timm's VisionTransformer with our patch embedding and a position table for our grid."""
    from timm.models.vision_transformer import VisionTransformer

    kwargs = dict(
        img_size=size, patch_size=16, embed_dim=spec.embed_dim, depth=spec.depth,
        num_heads=spec.heads, qkv_bias=True, drop_path_rate=cfg.drop_path, global_pool="token",
    )  # fmt: skip
    if spec.clip:  # timm's vit_base_patch16_clip_quickgelu_224 shapes
        kwargs.update(pre_norm=True, norm_layer=partial(nn.LayerNorm, eps=1e-5),
                      act_layer="quick_gelu", num_classes=spec.proj_dim)  # fmt: skip
    else:
        kwargs.update(num_classes=0, norm_layer=partial(nn.LayerNorm, eps=1e-6))
    trunk = VisionTransformer(**kwargs)
    # CLIP's conv1 has no bias (timm: bias=not pre_norm); the projection has none either.
    trunk.patch_embed = OverlapPatchEmbed(
        size, spec.embed_dim, cfg.patch_stride, cfg.stem, bias=not spec.clip
    )
    tokens = trunk.patch_embed.num_patches + 1
    trunk.pos_embed = nn.Parameter(torch.zeros(1, tokens, spec.embed_dim))
    nn.init.trunc_normal_(trunk.pos_embed, std=0.02)
    if spec.clip:
        trunk.head = nn.Linear(spec.embed_dim, spec.proj_dim, bias=False)
    return trunk


def bn_neck(width: int) -> nn.BatchNorm1d:
    neck = nn.BatchNorm1d(width)
    nn.init.ones_(neck.weight)
    nn.init.zeros_(neck.bias)
    neck.bias.requires_grad_(False)
    return neck


class VitReidModel(nn.Module):
    """Images (ImageNet-normalised) -> unit embeddings; see the module doc for the parts."""

    def __init__(self, cfg: ModelConfig, size: tuple[int, int], num_cameras: int = 0) -> None:
        super().__init__()
        if cfg.arch not in VIT_SPECS:
            raise ValueError(f"model.arch={cfg.arch!r} is not a transformer: {sorted(VIT_SPECS)}")
        spec = VIT_SPECS[cfg.arch]
        self.spec = spec
        self.trunk = build_trunk(spec, cfg, size)
        self.neck = bn_neck(spec.embed_dim)
        self.proj_neck = bn_neck(spec.proj_dim) if spec.clip else None
        self.feature_dim = spec.feature_dim
        mean, std = PIXEL_STATS[spec.pixel_norm if cfg.pixel_norm == "auto" else cfg.pixel_norm]
        # x_family = (x * std_in + mean_in - mean) / std: one scale and shift per channel
        scale = torch.tensor(IMAGENET[1]) / torch.tensor(std)
        shift = (torch.tensor(IMAGENET[0]) - torch.tensor(mean)) / torch.tensor(std)
        self.register_buffer("pixel_scale", scale.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_shift", shift.view(1, 3, 1, 1), persistent=False)
        self.camera_mode = cfg.camera_embedding
        self.camera_coef = cfg.camera_coef
        self.camera_embed: nn.Parameter | None = None
        if self.camera_mode != "none":
            if num_cameras < 1:
                raise ValueError(
                    f"model.camera_embedding={self.camera_mode} needs camera ids: the training "
                    f"set has {num_cameras} cameras"
                )
            self.camera_embed = nn.Parameter(torch.zeros(num_cameras, spec.embed_dim))
            nn.init.trunc_normal_(self.camera_embed, std=0.02)
        self.cameras: torch.Tensor | None = None  # set by camera_ids() for one forward
        if cfg.pretrained != "none":
            self._load(cfg)
        if cfg.freeze_patch_embed:
            self.trunk.patch_embed.proj.requires_grad_(False)

    def _load(self, cfg: ModelConfig) -> None:
        from unreid.models.vit_weights import (
            FAMILIES,
            load_vit_weights,
            read_weights_file,
            vit_hub_file,
        )

        source = cfg.pretrained
        path = vit_hub_file(cfg.arch, source) if source in FAMILIES else source
        data = read_weights_file(path)
        load_vit_weights(self.trunk, data, str(path), self.spec.clip, cfg.pos_resample)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """timm's forward_features, with our pixel map and the camera embedding in place."""
        t = self.trunk
        x = self.trunk.patch_embed(x * self.pixel_scale + self.pixel_shift)
        x = torch.cat([t.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + t.pos_embed
        if self.camera_embed is not None:
            x = self._add_cameras(x)
        x = t.norm_pre(t.patch_drop(t.pos_drop(x)))
        return t.norm(t.blocks(x))

    def _add_cameras(self, x: torch.Tensor) -> torch.Tensor:
        cams = self.cameras
        if cams is None:
            raise RuntimeError(
                "this model has a camera embedding (model.camera_embedding="
                f"{self.camera_mode}): pass the images' camera ids (camera_ids(model, cams))"
            )
        if cams.shape != (x.shape[0],):
            raise ValueError(f"{x.shape[0]} images but camera ids of shape {tuple(cams.shape)}")
        if int(cams.min()) < 0 or int(cams.max()) >= self.camera_embed.shape[0]:
            raise ValueError(
                f"camera ids {int(cams.min())}..{int(cams.max())} outside the "
                f"{self.camera_embed.shape[0]} cameras this model was trained with"
            )
        side = self.camera_coef * self.camera_embed[cams.to(x.device)].to(x.dtype)
        if self.camera_mode == "all_tokens":
            return x + side.unsqueeze(1)
        return torch.cat([x[:, :1] + side.unsqueeze(1), x[:, 1:]], dim=1)

    def trunk_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The class token after the last norm, and CLIP's projection of it (else None)."""
        cls = self.tokens(x)[:, 0]
        return cls, (self.trunk.head(cls) if self.spec.clip else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cls, proj = self.trunk_features(x)
        out = self.neck(cls)
        if proj is not None:
            out = torch.cat([out, self.proj_neck(proj)], dim=1)
        # unit length in fp32 even under autocast, as the ResNet model
        return F.normalize(out.float(), dim=1)


@contextmanager
def camera_ids(model: nn.Module, cameras: torch.Tensor | None) -> Iterator[None]:
    """Within the block, a camera-embedding model reads `cameras` (B,) for its forward.

    Any other model (ResNets, transformers without the embedding) is unaffected, so the
    loop and extraction wrap every forward without asking what the model is.
    """
    target = getattr(model, "module", model)  # DDP's wrapped model
    if not isinstance(target, VitReidModel) or target.camera_embed is None:
        yield
        return
    previous, target.cameras = target.cameras, cameras
    try:
        yield
    finally:
        target.cameras = previous
