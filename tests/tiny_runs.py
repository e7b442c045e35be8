"""The budgets of the end-to-end tests, written once (tests/ is on sys.path via conftest)."""

# 96x48 images, ResNet-18 from random init (the demo preset), a few-second epoch
TINY_RUN = [
    "data.height=96",
    "data.width=48",
    "data.workers=0",
    "data.holdout_ids=2",
    "cluster.k1=10",
    "cluster.k2=3",
    "train.batch_size=32",
    "train.num_instances=4",
    "train.threads=2",
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
