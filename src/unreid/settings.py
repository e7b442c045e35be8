"""The core config sections: data, model, clustering, training, evaluation.

Each section checks its own values in `__post_init__` (a typo or a bad value
fails when the config is loaded, before any data is read) and says which of
its keys the chosen mode ignores (`ignored()`), so the loader can report them
and leave them out of a run's `config.yaml`. Method sections live next to
their methods (`methods/*.py`); names that a registry resolves (datasets,
backbones, clusterers) are checked by the loader against those registries.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from unreid.errors import check, check_choice, check_range

JACCARD_VARIANTS = ("paper", "cluster_contrast")
JACCARD_IMPLS = ("sparse", "dense")
KNN_BACKENDS = (
    "auto", "torch", "exact", "ivf", "hnsw", "ivf_whitened", "torch_bf16", "torch_tf32",
    "torch_fp32",
)  # fmt: skip
SELECT_BEST_ON = ("val", "test", "none")
BAD_IMAGE_POLICIES = ("error", "skip")
ERASING_FILLS = ("zero", "reference")
ON_DEGENERATE = ("stop", "skip")
AMP_MODES = ("auto", "bf16", "fp16", "off")
BN_RUNNING_STATS = ("first", "mean")
# Batch samplers (data/epoch_batches.py maps each name to its class) and epoch lengths.
SAMPLERS = ("pk", "pk_stream", "proxy_balanced", "pk_cameras")
EPOCH_LENGTHS = ("iters", "one_pass")
# Optimizers and schedules (engine/optim.py and engine/schedule.py build them), and which
# parameters skip weight decay.
OPTIMIZERS = ("adam", "sgd")
SCHEDULERS = ("step", "cosine")
NO_WEIGHT_DECAY = ("none", "norm_bias_tokens")
# Transformer trunk options (models/vit.py).
VIT_STEMS = ("patch", "ics")
CAMERA_EMBEDDINGS = ("none", "all_tokens", "cls_token")
PIXEL_NORMS = ("auto", "imagenet", "half", "luperson", "clip")
POS_RESAMPLES = ("bicubic", "bilinear")


@dataclass
class DataConfig:
    dataset: str = "market1501"
    root: str = "data"
    height: int = 256
    width: int = 128
    workers: int = 4
    # Identities held out of the (labelled) training split to pick `best.pth`
    # without looking at the test set; 0 = no validation split.
    holdout_ids: int = 0
    # Decode the training images once and keep them in memory (small sets only).
    cache_images: bool = False
    # Unsupervised domain adaptation (method=spcl_uda): a labelled source dataset
    # trained beside the unlabelled target `dataset`; "" = none. Its root
    # defaults to `root`.
    source: str = ""
    source_root: str = ""
    # Every image is decoded once when the dataset is loaded: "error" stops before
    # training and names every unreadable file; "skip" leaves them out and counts them.
    bad_images: str = "error"
    # Random erasing writes 0 into the normalised tensor ("zero": the ImageNet mean
    # colour) or the ImageNet mean values themselves ("reference": Cluster Contrast's code).
    erasing_fill: str = "zero"
    # Decode every training image once into a uint8 tensor at the training size (shared
    # by the loader workers; refused above `decoded_cache_gb` GB), and augment whole
    # batches on the device instead of per image with PIL (needs the decoded cache).
    decoded_cache: bool = False
    decoded_cache_gb: float = 8.0
    device_augment: bool = False

    def __post_init__(self) -> None:
        check_range("decoded_cache_gb", self.decoded_cache_gb, 0.0, low_open=True)
        check(
            "device_augment",
            self.device_augment,
            self.decoded_cache or not self.device_augment,
            "needs data.decoded_cache=true (it augments the decoded uint8 batches)",
        )
        check_choice("bad_images", self.bad_images, BAD_IMAGE_POLICIES)
        check_choice("erasing_fill", self.erasing_fill, ERASING_FILLS)
        check_range("height", self.height, 1)
        check_range("width", self.width, 1)
        check_range("workers", self.workers, 0)
        check_range("holdout_ids", self.holdout_ids, 0)

    def ignored(self) -> dict[str, str]:
        return {} if self.source else {"source_root": "no data.source is set"}

    def with_absolute_roots(self) -> DataConfig:
        """`root` and `source_root` as absolute paths, as the loaders read them.

        A run's config is read again from other folders (`--resume` from elsewhere,
        `unreid eval`, the report), where a relative root would name other data or
        none. `~` is expanded and symlinks are kept (absolute, not resolved).
        """

        def absolute(path: str) -> str:
            return str(Path(path).expanduser().absolute()) if path else path

        return replace(self, root=absolute(self.root), source_root=absolute(self.source_root))


@dataclass
class ModelConfig:
    arch: str = "resnet50"
    # "imagenet" (torchvision download / cache), "none" (random init) or a file path;
    # transformers also name their weight families here (`unreid list backbones`).
    pretrained: str = "imagenet"
    pooling: str = "avg"
    last_stride: int = 1
    # Domain-specific BatchNorm (SpCL's DSBN): every BN layer keeps source and
    # target statistics apart; evaluation uses the target ones. UDA only.
    dsbn: bool = False
    # Transformer trunks (arch vit_* / clip_*; models/vit.py). Patch stride 16, or < 16 for
    # TransReID's overlapping patches (12: 21x10 tokens at 256x128).
    patch_stride: int = 16
    # "patch" (one conv) or "ics" (TransReID-SSL's IBN conv stem; stride 16 only).
    stem: str = "patch"
    # Camera (side-information) embedding: "none", "all_tokens" (TransReID, coefficient 3.0)
    # or "cls_token" (CLIP-ReID, 1.0); its size comes from the training set's camera ids.
    camera_embedding: str = "none"
    camera_coef: float = 3.0
    drop_path: float = 0.0
    # Pixel normalisation the trunk sees: "auto" (its weight family's), "imagenet",
    # "half" (mean = std = 0.5, TransReID family), "luperson" or "clip".
    pixel_norm: str = "auto"
    # Position-embedding resampling to the run's grid: "bicubic" (timm) or "bilinear"
    # (TransReID's reference code).
    pos_resample: str = "bicubic"
    # Freeze the patch-projection convolution (PCL-CLIP's stability trick).
    freeze_patch_embed: bool = False

    def __post_init__(self) -> None:
        check_choice("last_stride", self.last_stride, (1, 2))
        check_range("patch_stride", self.patch_stride, 1, 16)
        check_choice("stem", self.stem, VIT_STEMS)
        check_choice("camera_embedding", self.camera_embedding, CAMERA_EMBEDDINGS)
        check_range("drop_path", self.drop_path, 0.0, 1.0)
        check_choice("pixel_norm", self.pixel_norm, PIXEL_NORMS)
        check_choice("pos_resample", self.pos_resample, POS_RESAMPLES)
        if self.stem == "ics":
            check("patch_stride", self.patch_stride, self.patch_stride == 16,
                  "16 with model.stem=ics (the stem's projection is 8x8 at stride 8)")  # fmt: skip

    @property
    def transformer(self) -> bool:
        """Transformer archs are named vit_* / clip_* (models/backbones.py registers them)."""
        return self.arch.startswith(("vit_", "clip_"))

    def ignored(self) -> dict[str, str]:
        vit_keys = ("patch_stride", "stem", "camera_embedding", "camera_coef", "drop_path",
                    "pixel_norm", "pos_resample", "freeze_patch_embed")  # fmt: skip
        if not self.transformer:
            return {k: f"model.arch={self.arch} is a ResNet" for k in vit_keys}
        out = {k: f"model.arch={self.arch} is a transformer" for k in ("pooling", "last_stride")}
        if self.camera_embedding == "none":
            out["camera_coef"] = "model.camera_embedding=none"
        return out


@dataclass
class ClusterConfig:
    # "dbscan" on the k-reciprocal Jaccard distance, "infomap" on a kNN similarity
    # graph, or "ground_truth" (the true identities: an upper bound, labelled data only).
    method: str = "dbscan"
    k1: int = 30
    k2: int = 6
    eps: float = 0.6
    min_samples: int = 4
    # "paper" (re-ranking paper's sets) or "cluster_contrast" (reference code's off-by-one).
    jaccard_variant: str = "paper"
    # "sparse" (O(N·k) memory, same labels) or "dense" (the N×N reference).
    jaccard_impl: str = "sparse"
    # kNN for the sparse path: "auto" ("torch" below 100,000 images or on a GPU, else
    # "ivf_whitened"), "torch" (exact, GPU when the features are on one),
    # "exact" (faiss flat index), "ivf", "hnsw" or "ivf_whitened" (approximate, for
    # very large N; the last keeps the clustering on camera-shifted features, see
    # docs/scale.md),
    # "torch_bf16" / "torch_tf32" / "torch_fp32" (exact: low-precision products re-ranked
    # in float64, any device; the same lists for any sharding of the queries).
    knn: str = "auto"
    # Under torchrun, split the dbscan kNN search and Jaccard rows over the ranks (rank 0
    # still runs DBSCAN); identical to one process with the torch_* device backends.
    shard: bool = True
    # IVF cells (0 = 4 sqrt(N)) and cells scanned per query (0 = the backend's
    # default: 8 for "ivf", 64 for "ivf_whitened"), for the IVF backends ("auto" above
    # 100,000 images included).
    ivf_nlist: int = 0
    ivf_nprobe: int = 0
    # Rounds of neighbours-of-neighbours refinement of the approximate backends' lists
    # ("ivf", "hnsw", "ivf_whitened": "auto" from 100,000 images on a CPU); 0 = none.
    knn_refine: int = 1
    # InfoMap (Cluster Contrast README recipe): kNN k (self included), edge similarity
    # threshold, and the smallest cluster kept (clusters of <= 4 images become outliers).
    infomap_k: int = 15
    infomap_min_sim: float = 0.5
    infomap_min_size: int = 5
    # A clustering with no cluster, one cluster, or more than `max_outlier_ratio` of
    # the images left out is degenerate: "stop" the run, or "skip" training that epoch.
    on_degenerate: str = "stop"
    max_outlier_ratio: float = 0.9

    def __post_init__(self) -> None:
        check_choice("on_degenerate", self.on_degenerate, ON_DEGENERATE)
        check_range("max_outlier_ratio", self.max_outlier_ratio, 0.0, 1.0)
        check_range("k1", self.k1, 1)
        check_range("k2", self.k2, 1)
        check_range("eps", self.eps, 0, low_open=True)
        check_range("min_samples", self.min_samples, 1)
        check_choice("jaccard_variant", self.jaccard_variant, JACCARD_VARIANTS)
        check_choice("jaccard_impl", self.jaccard_impl, JACCARD_IMPLS)
        check(
            "eps",
            self.eps,
            self.eps < 1 or self.jaccard_impl == "dense",
            "must be < 1 with the sparse Jaccard (pairs it does not store are at distance 1)",
        )
        check_choice("knn", self.knn, KNN_BACKENDS)
        check_range("ivf_nlist", self.ivf_nlist, 0)
        check_range("ivf_nprobe", self.ivf_nprobe, 0)
        check_range("knn_refine", self.knn_refine, 0)
        check_range("infomap_k", self.infomap_k, 2)
        check_range("infomap_min_sim", self.infomap_min_sim, -1.0, 1.0)
        check_range("infomap_min_size", self.infomap_min_size, 1)

    def ignored(self) -> dict[str, str]:
        dbscan = (
            "k1", "k2", "eps", "min_samples", "jaccard_variant", "jaccard_impl", "knn", "shard",
        )  # fmt: skip
        infomap = ("infomap_k", "infomap_min_sim", "infomap_min_size")
        ivf = ("ivf_nlist", "ivf_nprobe")
        out: dict[str, str] = {}
        if self.method != "dbscan":
            out.update({k: f"cluster.method={self.method}" for k in (*dbscan, *ivf, "knn_refine")})
        elif self.knn not in ("ivf", "ivf_whitened", "auto") or self.jaccard_impl == "dense":
            why = (
                "cluster.jaccard_impl=dense"
                if self.jaccard_impl == "dense"
                else f"cluster.knn={self.knn}"
            )
            out.update({k: why for k in ivf})
        if self.method == "dbscan" and self.knn not in ("ivf", "hnsw", "ivf_whitened", "auto"):
            out["knn_refine"] = f"cluster.knn={self.knn}"
        if self.method == "dbscan" and self.jaccard_impl == "dense":
            out["knn_refine"] = "cluster.jaccard_impl=dense"
        if self.method == "dbscan" and self.jaccard_impl == "dense":
            out["knn"] = out["shard"] = "cluster.jaccard_impl=dense"
        if self.method != "infomap":
            out.update({k: f"cluster.method={self.method}" for k in infomap})
        return out


@dataclass
class TrainConfig:
    epochs: int = 50
    iters: int = 200
    batch_size: int = 256
    num_instances: int = 16
    lr: float = 3.5e-4
    weight_decay: float = 5e-4
    step_size: int = 20
    gamma: float = 0.1
    # Linear warm-up before the step decay (CAP's recipe: 10 epochs from 0.01x): epoch e
    # < warmup_epochs trains at lr x (f + (1 - f) e / warmup_epochs), f = warmup_factor,
    # times the step decay; 0 = off (the plain step schedule).
    warmup_epochs: int = 0
    warmup_factor: float = 0.01
    # "adam" (the CNN recipes) or "sgd" with `momentum` (ViT / CLIP recipes, TransReID-SSL,
    # PCL-CLIP: momentum 0.9).
    optimizer: str = "adam"
    momentum: float = 0.9
    # torch's fused kernel for the optimizer step (on CPU and CUDA): the same update to
    # float rounding, 5x faster than the per-tensor loop on CPU. false: torch's default
    # (that loop on CPU, foreach on CUDA), what the reference codes ran. A run saved
    # before this key existed resumes with the default it trained with.
    fused_optimizer: bool = True
    # "step" (x gamma every step_size epochs) or "cosine": from lr down to
    # lr x min_lr_factor over train.epochs; the warm-up multiplies either.
    scheduler: str = "step"
    min_lr_factor: float = 0.0
    # "none" (every parameter decays) or "norm_bias_tokens": 1-D parameters (norm weights,
    # biases) and position / class / camera tokens train without weight decay (timm's ViT rule).
    no_weight_decay: str = "none"
    # Batches: "pk" (P pseudo identities x K, partners preferring other cameras),
    # "pk_stream" (the reference code's: identities in turn, K images each but one for a
    # one-image class, cut into batches; single process only) or "proxy_balanced"
    # (CAP's: P camera-aware proxies, i.e. (cluster, camera) pairs, x K) or "pk_cameras"
    # (ICE's: P identities x K, one image of each of an identity's cameras first).
    sampler: str = "pk"
    # Steps per epoch: "iters" (a fixed train.iters) or "one_pass" (CAP's epoch: this
    # epoch's clustered images // batch size, so one pass over the data in images).
    epoch_length: str = "iters"
    seed: int = 1
    device: str = "auto"
    # Train on the true identities instead of pseudo labels (an upper bound).
    ground_truth: bool = False
    extract_batch_size: int = 128
    threads: int = 0  # 0 = leave torch's default
    # BatchNorm groups: the P×K batch is normalised in groups of this many images (whole
    # identities), as DataParallel over batch/group GPUs did in the reference runs; 0 =
    # the whole per-device batch. Running statistics: "first" group's (DataParallel) or
    # the "mean" of the groups' updates.
    bn_group_size: int = 0
    bn_running_stats: str = "first"
    # Mixed precision: "auto" = bf16 on GPUs that support it, fp16 (with a grad scaler)
    # on older ones, off on CPU. Memories, losses and clustering stay fp32.
    amp: str = "auto"
    channels_last: bool = False
    tf32: bool = True
    compile: bool = False

    def __post_init__(self) -> None:
        check_range("epochs", self.epochs, 1)
        check_range("iters", self.iters, 1)
        check_range("batch_size", self.batch_size, 1)
        check_range("num_instances", self.num_instances, 1)
        check(
            "batch_size",
            self.batch_size,
            self.batch_size % self.num_instances == 0,
            f"must be a multiple of train.num_instances ({self.num_instances})",
        )
        check_range("lr", self.lr, 0, low_open=True)
        check_range("weight_decay", self.weight_decay, 0)
        check_range("step_size", self.step_size, 1)
        check_range("gamma", self.gamma, 0, low_open=True)
        check_range("warmup_epochs", self.warmup_epochs, 0)
        check_range("warmup_factor", self.warmup_factor, 0.0, 1.0, low_open=True)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_range("momentum", self.momentum, 0.0, 1.0, high_open=True)
        check_choice("scheduler", self.scheduler, SCHEDULERS)
        check_range("min_lr_factor", self.min_lr_factor, 0.0, 1.0)
        check_choice("no_weight_decay", self.no_weight_decay, NO_WEIGHT_DECAY)
        check_choice("sampler", self.sampler, SAMPLERS)
        check_choice("epoch_length", self.epoch_length, EPOCH_LENGTHS)
        # numpy seeds are 32-bit and each epoch reseeds with seed * 1000 + epoch
        check_range("seed", self.seed, 0, 4_000_000)
        check_range("extract_batch_size", self.extract_batch_size, 1)
        check_range("threads", self.threads, 0)
        check_range("bn_group_size", self.bn_group_size, 0)
        check_choice("bn_running_stats", self.bn_running_stats, BN_RUNNING_STATS)
        check_choice("amp", self.amp, AMP_MODES)
        if self.bn_group_size:
            check(
                "bn_group_size",
                self.bn_group_size,
                self.bn_group_size % self.num_instances == 0,
                f"must hold whole identities: a multiple of train.num_instances ({self.num_instances})",
            )

    def ignored(self) -> dict[str, str]:
        out: dict[str, str] = {}
        if not self.bn_group_size:
            out["bn_running_stats"] = "train.bn_group_size=0"
        if not self.warmup_epochs:
            out["warmup_factor"] = "train.warmup_epochs=0"
        if self.optimizer != "sgd":
            out["momentum"] = f"train.optimizer={self.optimizer}"
        if self.scheduler == "cosine":
            out.update({k: "train.scheduler=cosine" for k in ("step_size", "gamma")})
        else:
            out["min_lr_factor"] = f"train.scheduler={self.scheduler}"
        if self.epoch_length == "one_pass":
            out["iters"] = "train.epoch_length=one_pass"
        return out


@dataclass
class EvalConfig:
    every: int = 10
    # "val" (held-out identities, see data.holdout_ids), "test" (the reference
    # code's habit: leaks test labels into model selection) or "none".
    select_best_on: str = "val"
    # Evaluate the untrained model before epoch 1 (the demo's "before" figure).
    at_start: bool = False
    # k-reciprocal re-ranking at test time (k1=20, k2=6, lambda=0.3, Zhong et al.).
    rerank: bool = False
    batch_size: int = 128

    def __post_init__(self) -> None:
        check_range("every", self.every, 1)
        check_choice("select_best_on", self.select_best_on, SELECT_BEST_ON)
        check_range("batch_size", self.batch_size, 1)

    def ignored(self) -> dict[str, str]:
        return {}


@dataclass
class LogConfig:
    # TensorBoard scalars beside log.jsonl (which stays the source of truth);
    # needs the `unreid[tensorboard]` extra.
    tensorboard: bool = False

    def ignored(self) -> dict[str, str]:
        return {}
