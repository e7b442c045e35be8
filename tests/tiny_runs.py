"""The budgets and tiny data sets of the end-to-end tests, written once (tests/ is on sys.path)."""

from unreid.data.synthetic import SynthConfig

# The session's tiny synthetic set (conftest's tiny_synthetic fixture writes it)
TINY = SynthConfig(
    ids=48, cameras=3, images_per_id_camera=(2, 4), distractors=20, seed=3, height=96, width=48
)

# A second domain for adaptation tests: other people, other scenery, stronger camera styles.
TINY_B = SynthConfig(
    ids=24,
    cameras=2,
    images_per_id_camera=(2, 3),
    distractors=0,
    seed=11,
    height=96,
    width=48,
    scenery_saturation=0.8,
    colour_cast=0.15,
)


# 64x32 images (the set is drawn at 96x48), ResNet-18 from random init (the demo preset):
# a two-second epoch. What these runs check holds at any size; at 96x48 they cost 2-3x.
TINY_RUN = [
    "data.height=64",
    "data.width=32",
    "data.workers=0",
    "data.holdout_ids=2",
    "cluster.k1=10",
    "cluster.k2=3",
    "train.batch_size=32",
    "train.num_instances=4",
    "train.threads=1",  # the suite's two xdist workers share the two cores; so do subprocesses
]
# ... on the CPU, with no validation split, no evaluation before the last epoch, no best.pth
QUIET_RUN = [
    *TINY_RUN,
    "data.holdout_ids=0",
    "train.device=cpu",
    "eval.every=10",
    "eval.at_start=false",
    "eval.select_best_on=none",
]
# ... and the shortest run there is: one epoch of one step (run-folder and overwrite tests)
ONE_STEP_RUN = [*QUIET_RUN, "train.iters=1", "train.epochs=1"]
