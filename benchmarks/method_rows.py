"""The rows of benchmarks/methods.py: what each table compares, on which synthetic set.

A row is data (a label, a preset, its overrides); methods.py plans and runs them.
Run folders are named `<row>-<hash of preset and overrides>`, so renaming or
adding rows here never reuses or invalidates another row's runs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from unreid.data.synthetic import SynthConfig


@dataclass(frozen=True)
class Row:
    """One table row: `data` is "A" (demo set), "B" (target alone) or "A->B" (adaptation)."""

    name: str
    label: str
    preset: str
    overrides: tuple[str, ...] = ()
    group: str = "demo"
    data: str = "A"
    default: bool = True  # in its group's table when the group is asked for


CAMERA_FRAME, RANDOM = ("gcl_scl.order=camera_frame",), ("gcl_scl.order=random",)
KNN = ("gcl_scl.graph=knn",)  # issue 17: identity-free CR graphs by construction
KNN_WARM = (*KNN, "gcl_scl.cr_start_epoch=2")  # issue 17: CR from epoch 3
SAA_WARM = ("csa_hps.saa_start_epoch=2",)  # issue 17: SAA feeds the memory from epoch 3
# issue 17's ablations: one switch of the full method off at a time (GCL on camera_frame
# chunks, the paper's form with an identity-free order; CSA + HPS as the paper)
# CR off: NS still trains through the GCL module, and the x^ memory still starts from
# v^ of the ordered graphs, so the order matters here too (camera_frame, identity-free)
NO_CR = (*CAMERA_FRAME, "gcl_scl.cr=false")
NO_CR_NAME = ("gcl_scl.cr=false",)  # the first CR-off row: its x^ memory saw name-order graphs
NO_GCL = (*NO_CR_NAME, "gcl_scl.ns=false")  # SCL alone (no GCL module: order unused)
NO_SCL = (*CAMERA_FRAME, "gcl_scl.update=average")  # batch-mean update: SCL's policy off
NO_CSA, NO_HPS = ("csa_hps.init=mean",), ("csa_hps.update=mean",)
FRESH = ("spcl.cluster_on=extracted",)  # a diagnosis row: SpCL clustering fresh features
STREAM = ("train.sampler=pk_stream",)  # a diagnosis row: SpCL with the reference's batches
DSBN = ("model.dsbn=true",)
OFFICIAL = ("spcl.loss=official",)  # issue 33: SpCL's released masked softmax
# issue 33's search for a regime in which SpCL learns from the pretrained weights: the
# independence threshold recomputed each epoch (SpCL's code fixes it after the first), and
# twice the epochs (the demo's 30 iterations of 64 are already ~1.5 passes over its 1,244
# crops per epoch, close to the paper's 400 x 64 over Market's 12,936)
EVERY_EPOCH = ("spcl.independence_rule=every_epoch",)
EPOCHS_16 = ("train.epochs=16",)
ICE_CODE = ("ice.extract_with=teacher", "train.sampler=pk_cameras")
UDA_EXTRA = {"group": "uda", "data": "A->B", "default": False}  # asked for by name
# issue 28: Cluster Contrast on a ViT-S/16 with TransReID-SSL's unsupervised recipe
# (cluster_contrast/market1501_vit_small_lup: SGD momentum 0.9 at lr 3.5e-4, drop-path 0.3,
# hard memory update at momentum 0.2, K = 8) on the demo's budget, size and data; the
# pretrained regime starts it from its own ViT-S pretraining (PRETRAINS below)
VIT_SMALL = ("model.arch=vit_small", "train.optimizer=sgd", "model.drop_path=0.3",
             "cluster_contrast.memory_update=hard", "cluster_contrast.momentum=0.2",
             "train.num_instances=8")  # fmt: skip
# the same with the demo's Adam (3.5e-4) in place of SGD
VIT_SMALL_ADAM = tuple(o.replace("=sgd", "=adam") for o in VIT_SMALL)
ROWS = [
    Row("cc", "Cluster Contrast", "demo"),
    Row("hhcl", "HHCL", "hhcl/demo"),
    Row("cap", "CAP + CC", "cap/demo"),
    Row("cap_only", "CAP alone", "cap/demo_cap_only"),
    Row("gcl_scl", "GCL + SCL, name order (identity leak)", "gcl_scl/demo"),
    Row("gcl_scl_camera_frame", "GCL + SCL, camera_frame order", "gcl_scl/demo", CAMERA_FRAME),
    Row("gcl_scl_random", "GCL + SCL, random order", "gcl_scl/demo", RANDOM, default=False),
    Row("gcl_scl_knn", "GCL + SCL, kNN graphs", "gcl_scl/demo", KNN, default=False),
    Row("gcl_scl_knn_warm", "GCL + SCL, kNN + CR warm-up", "gcl_scl/demo", KNN_WARM, default=False),
    Row("gcl_scl_no_cr", "GCL + SCL, CR off", "gcl_scl/demo", NO_CR, default=False),
    Row(
        "gcl_scl_no_cr_name",
        "GCL + SCL, CR off, name order",
        "gcl_scl/demo",
        NO_CR_NAME,
        default=False,
    ),
    Row("gcl_scl_no_gcl", "GCL + SCL, CR and NS off", "gcl_scl/demo", NO_GCL, default=False),
    Row("gcl_scl_no_scl", "GCL + SCL, SCL off", "gcl_scl/demo", NO_SCL, default=False),
    Row("csa_hps", "CSA + HPS", "csa_hps/demo"),
    Row("csa_hps_warm", "CSA + HPS, SAA warm-up", "csa_hps/demo", SAA_WARM, default=False),
    Row("csa_hps_no_csa", "CSA + HPS, CSA off (mean init)", "csa_hps/demo", NO_CSA, default=False),
    Row("csa_hps_no_hps", "CSA + HPS, HPS off", "csa_hps/demo", NO_HPS, default=False),
    Row("spcl", "SpCL", "spcl/demo"),
    Row("spcl_extracted", "SpCL, extracted features clustered", "spcl/demo", FRESH, default=False),
    Row("spcl_official", "SpCL, official loss (1e-6 terms)", "spcl/demo", OFFICIAL, default=False),
    Row("spcl_stream", "SpCL, reference batches (pk_stream)", "spcl/demo", STREAM, default=False),
    Row("spcl_every_epoch", "SpCL, threshold every epoch", "spcl/demo", EVERY_EPOCH, default=False),
    Row("spcl_16_epochs", "SpCL, 16 epochs", "spcl/demo", EPOCHS_16, default=False),
    Row("ice", "ICE", "ice/demo"),
    # issue 33: ICE as its code runs it (the teacher clusters and is evaluated; one image of
    # each camera per identity first); ice/demo itself extracts the student with plain P×K
    Row("ice_teacher", "ICE, teacher + camera sampler", "ice/demo", ICE_CODE, default=False),
    Row("cc_vit_small", "Cluster Contrast, ViT-S/16", "demo", VIT_SMALL, default=False),
    Row("cc_vit_small_adam", "CC, ViT-S/16, Adam", "demo", VIT_SMALL_ADAM, default=False),
    Row("uda_cc_target_only", "Cluster Contrast, B alone", "demo", group="uda", data="B"),
    Row("uda_spcl", "SpCL UDA, A→B", "spcl/demo_uda", group="uda", data="A->B"),
    Row("uda_spcl_cc", "SpCL + CC UDA, A→B", "spcl_uda/demo", group="uda", data="A->B"),
    # SpCL's own configuration: domain-specific BN, each domain's copy starting from the
    # network's BN (the demo presets share BN: from random init DSBN trained worse there)
    Row("uda_spcl_dsbn", "SpCL UDA, DSBN, A→B", "spcl/demo_uda", DSBN, **UDA_EXTRA),
    Row("uda_spcl_cc_dsbn", "SpCL + CC UDA, DSBN, A→B", "spcl_uda/demo", DSBN, **UDA_EXTRA),
]
OUT = Path(__file__).resolve().parent / "out" / "methods"  # ignored by git (/benchmarks/out/)
BASELINES = {"demo": "cc", "uda": "uda_cc_target_only"}
# A: the demo's set (the folder `unreid demo` writes); B: another domain (docs/datasets.md)
B_SET = SynthConfig(ids=200, seed=1, warmth=0.25, exposure=-0.3, scenery_saturation=0.7)
# P: the pretraining domain of `--regime pretrained` (other people, cool and bright)
P_SET = SynthConfig(ids=200, seed=2, warmth=-0.2, exposure=0.2, scenery_saturation=0.5)
SETS = {
    "A": ("synthetic-demo-ids200-seed0", SynthConfig(ids=200, seed=0)),
    "B": ("synthetic-b-ids200-seed1", replace(B_SET, colour_cast=0.1, lighting=0.15)),
    "P": ("synthetic-p-ids200-seed2", P_SET),
}
# --regime pretrained: every row starts from this run's last.pth (identities known on P)
PRETRAIN = Row(
    "pretrain", "Cluster Contrast on true identities", "cluster_contrast/pretrain_demo", data="P"
)
# ... and a row whose overrides set another model.arch from that arch's own pretraining
PRETRAINS = {
    "vit_small": Row(
        "pretrain_vit_small",
        "Cluster Contrast on true identities, ViT-S/16",
        "cluster_contrast/pretrain_demo_vit_small",
        data="P",
    ),
}
REGIMES = {
    "random": "every run starts from its preset's model.pretrained (none in the demo presets)",
    "pretrained": "every run starts from one network of its arch trained with true identities "
    "on synthetic set P (200 ids, data seed 2, cool and bright; preset "
    "cluster_contrast/pretrain_demo, the ResNet-18, or pretrain_demo_<arch>)",
}


def row_arch(row: Row) -> str | None:
    """The model.arch a row's own overrides set (the last one wins), else None (its preset's)."""
    archs = [o.split("=", 1)[1].strip() for o in row.overrides if o.split("=")[0] == "model.arch"]
    return archs[-1] if archs else None


def pretraining_row(row: Row) -> Row:
    """The run a row starts from in the pretrained regime: PRETRAIN, or its arch's own.

    Rows that leave model.arch alone keep PRETRAIN (so their run folders, which name its
    last.pth, are the ones earlier sessions wrote); an arch without an entry raises KeyError.
    """
    arch = row_arch(row)
    if arch is None:
        return PRETRAIN
    if arch not in PRETRAINS:
        raise KeyError(f"row {row.name!r} sets model.arch={arch}, which has no pretraining run "
                       f"in PRETRAINS (method_rows.py): {sorted(PRETRAINS)}")  # fmt: skip
    return PRETRAINS[arch]


TITLES = {
    "demo": "synthetic set A (the demo's: 200 ids, data seed 0)",
    "uda": "target: synthetic set B (200 ids, data seed 1, warm and dark); "
    "A→B rows adapt from labelled set A",
}
