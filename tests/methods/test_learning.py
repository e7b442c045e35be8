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

from learning_runs import per_method
from tiny_runs import TINY, TINY_B
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


@pytest.mark.slow
@pytest.mark.learning
@pytest.mark.parametrize("method", per_method(sorted(METHODS)))
def test_method_beats_its_null_control(method, learning_runs):
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
    trained = learning_runs.get(method, "trained").mAP  # seed SEEDS[0], shared with
    null = learning_runs.get(method, "null").mAP  # test_exact_resume (tests/learning_runs.py)
    assert trained - null > m.margin, (method, trained, null, m.margin)


def test_the_margin_is_the_largest_of_its_three_terms_and_every_seed_must_clear_it():
    # nulls 0.30, 0.32, 0.34, 0.36, 0.38: sample sd 0.0316 -> 2 sd = 0.0632
    null = {s: 0.30 + 0.02 * s for s in range(5)}
    # gaps 0.20, 0.21, 0.22, 0.23, 0.24: mean 0.22, sd 0.0158 -> mean - 3 sd = 0.1726
    trained = {s: null[s] + 0.20 + 0.01 * s for s in range(5)}
    m = lr.Measured(trained, null)
    assert m.margin == pytest.approx(0.22 - 3 * 0.0158114, abs=1e-6) and m.holds
    wide = lr.Measured({s: null[s] + g for s, g in enumerate([0.05, 0.4, 0.1, 0.45, 0.2])}, null)
    assert wide.margin == pytest.approx(2 * 0.0316228, abs=1e-6)  # the null's term wins
    assert wide.holds is False  # seed 0's gap of 0.05 is under 0.0632
    flat = lr.Measured({s: null[s] + 0.01 for s in range(5)}, null)
    assert flat.margin == pytest.approx(max(lr.MIN_MARGIN, 2 * 0.0316228)) and not flat.holds
    assert not lr.Measured(dict(list(trained.items())[:4]), null).holds  # 4 of 5 seeds: not enough
