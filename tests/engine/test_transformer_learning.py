"""A small ViT learns from random init: its trained test mAP beats the same run at lr ~0.

ViT-Ti/16 (`vit_tiny`: 192-d, 12 blocks) with TransReID-SSL's ICS convolutional stem,
on the tiny synthetic set at 96x48 (6x3 tokens), Cluster Contrast, 8 epochs x 20 steps of
32, Adam 3.5e-4 with a 2-epoch warm-up and no weight decay on norms, biases and tokens
(`norm_bias_tokens`). The null control is the same run, same seed, at lr 1e-9: the
untrained network plus whatever the BN statistics move.

What was tried first (seed 1, 6-8 epochs x 10-20 steps): the plain patch stem from
random init with Adam from the first step ends near or below its start of 10.3 mAP
(3.5e-4: 13.1 and 8.5; lr 1e-3: 6.6; lr 1e-4: 9.4), and at this budget with the warm-up and no-decay groups it reaches 14.6 against its null's 11.1
(seed 2: 11.3), a gap inside the noise. A ViT with a one-conv stem has no locality to
start from on 400 images; the conv stem gives it some (random-init features of 17-21 mAP
instead of 11). With it, over seeds 1-3 (MEASURED), the gap to the null is 14.3, 7.3 and
1.0 points: the ViT learns, but weakly and with a wide seed spread at this budget, with
clusters collapsing to 3-9 mid-run. Variants tried on seed 1 only: lr 1e-4 (24.1), the
hard memory update (30.9). The test runs seed 1 with a 5-point margin: it fails when the
ViT stops learning (trained = null), but a seed-robust margin needs a recipe that does
not collapse, which is still open (issue 31's learning tests).
"""

from __future__ import annotations

import pytest

from tiny_runs import TINY_RUN
from unreid.config import load_config
from unreid.engine import train

RECIPE = [
    "model.arch=vit_tiny",
    "model.stem=ics",
    "train.epochs=8",
    "train.iters=20",
    "train.warmup_epochs=2",
    "train.no_weight_decay=norm_bias_tokens",
    "eval.every=8",
    "eval.at_start=false",
    "train.device=cpu",
]
# seed: (trained, null) test mAP in % with this recipe on the 2-core CPU, torch 2.14.1
MEASURED = {1: (33.1, 18.8), 2: (24.6, 17.3), 3: (22.0, 21.0)}
MARGIN = 0.05


def final_map(root, out, lr: float) -> float:
    cfg = load_config(
        "demo", [*TINY_RUN, *RECIPE, f"data.root={root}", f"out_dir={out}", f"train.lr={lr}"]
    )
    return train(cfg, progress=False)["final_test"]["mAP"]


@pytest.mark.slow
@pytest.mark.learning
def test_vit_from_random_init_beats_its_null_control(tiny_synthetic, tmp_path):
    trained = final_map(tiny_synthetic, tmp_path / "trained", 3.5e-4)
    null = final_map(tiny_synthetic, tmp_path / "null", 1e-9)
    assert trained > null + MARGIN, (trained, null)
