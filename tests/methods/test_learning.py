"""Every registered method learns: its trained test mAP beats its null control by a measured margin.

The runs are `benchmarks/learning_recipes.py`'s (the method's demo preset on the tiny
synthetic set, and the same run at lr 1e-9). The margin is not chosen here: it is
computed from the seeds `benchmarks/learning.py` measured into the committed
`benchmarks/results/learning.jsonl` (the largest of twice the null's seed spread, the
measured gaps' mean minus three standard deviations, and 3 points), and a recipe is
only accepted when every measured seed clears it. A method registered
without a recipe fails here; one whose recipe is not measured on every seed of SEEDS yet is skipped
with the command that measures it (printed by -ra); one whose measured seeds do not
all clear the margin fails.
"""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path

import pytest

from tiny_runs import TINY, TINY_B
from unreid.config import load_config
from unreid.engine import train
from unreid.methods import METHODS

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))  # the recipes and the results file live with the script
import learning  # noqa: E402
import learning_recipes as lr  # noqa: E402
from results_file import read_results  # noqa: E402


def test_the_recipes_run_on_the_suites_tiny_sets():
    assert {k: v for k, v in asdict(TINY).items() if k in lr.TINY_SET} == lr.TINY_SET
    assert {
        k: v for k, v in asdict(TINY_B).items() if k in lr.TINY_SOURCE_SET
    } == lr.TINY_SOURCE_SET
    assert set(lr.RECIPES) == set(METHODS), "every registered method needs a learning recipe"


def final_map(method: str, seed: int, null: bool, target, source, out) -> float:
    recipe = lr.RECIPES[method]
    data = [f"data.root={target}"]
    if recipe.source:
        data += ["data.source=synthetic", f"data.source_root={source}"]
    over = recipe.config_overrides(seed, lr.NULL_LR if null else None)
    cfg = load_config(recipe.preset, [*over, *data, f"out_dir={out}"])
    return train(cfg, progress=False)["final_test"]["mAP"]


@pytest.mark.slow
@pytest.mark.learning
@pytest.mark.parametrize("method", sorted(METHODS))
def test_method_beats_its_null_control(method, tiny_synthetic, tiny_synthetic_b, tmp_path):
    assert method in lr.RECIPES, f"register a learning recipe for {method!r} in learning_recipes.py"
    m = lr.measured(read_results(learning.LEARNING_RESULTS, learning.FIELDS), method)
    if len(m.gaps) < len(lr.SEEDS):  # SKIPPED with this reason in every run (-ra), never silent
        pytest.skip(f"{method}: recipe {lr.RECIPES[method].key()} measured on {len(m.gaps)} of "
                    f"{len(lr.SEEDS)} seeds: python benchmarks/learning.py --methods {method}")  # fmt: skip
    assert m.holds, (
        f"{method}: recipe {lr.RECIPES[method].key()} has gaps {m.gaps} against margin "
        f"{m.margin:.3f} over {len(m.gaps)} measured seeds (need {len(lr.SEEDS)}, all above): "
        f"run `python benchmarks/learning.py --methods {method}`"
    )
    seed = lr.SEEDS[0]
    trained = final_map(method, seed, False, tiny_synthetic, tiny_synthetic_b, tmp_path / "t")
    null = final_map(method, seed, True, tiny_synthetic, tiny_synthetic_b, tmp_path / "n")
    assert trained - null > m.margin, (method, trained, null, m.margin)
