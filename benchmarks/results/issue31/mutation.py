"""The learning test's mutation check: break a method, run the test's comparison, print it.

    PYTHONPATH=src python benchmarks/results/issue31/mutation.py > benchmarks/results/issue31/mutation.log

Two mutations, each on seed 0 of the test's recipe with the test's margin from
benchmarks/results/learning.jsonl: Cluster Contrast with its loss multiplied by 0, and
HHCL with its memory update disabled (the memories stay at the epoch's cluster means).
"""

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # benchmarks/
import learning  # noqa: E402
import learning_recipes as lr  # noqa: E402
from results_file import read_results  # noqa: E402

from unreid.methods.cluster_contrast import ClusterContrast  # noqa: E402
from unreid.methods.hhcl import HHCL  # noqa: E402


def zero_loss(self, batch):
    return {k: 0 * v for k, v in ORIGINAL(self, batch).items()}


MUTATIONS = {
    "cluster_contrast": ("loss x 0", ClusterContrast, "losses", zero_loss),
    "hhcl": ("memory update disabled", HHCL, "update_memories", lambda self, batch: None),
}
lines = read_results(learning.LEARNING_RESULTS, learning.FIELDS)
with tempfile.TemporaryDirectory() as tmp:
    sets, meta = learning.write_sets(Path(tmp)), learning.provenance()
    for method, (what, cls, name, fn) in MUTATIONS.items():
        m = lr.measured(lines, method)
        ORIGINAL = getattr(cls, name)
        setattr(cls, name, fn)
        try:
            run = learning.run_once(method, 0, "trained", sets, Path(tmp) / method, meta)
        finally:
            setattr(cls, name, ORIGINAL)
        null = m.null[0]
        gap = run["mAP"] - null
        verdict = "FAILS the test" if gap <= m.margin else "passes the test"
        print(
            f"{method}, {what}: trained {100 * run['mAP']:.1f} vs null {100 * null:.1f} "
            f"(gap {100 * gap:+.1f}, margin {100 * m.margin:.1f}): {verdict}; "
            f"unmutated seed 0: trained {100 * m.trained[0]:.1f}",
            flush=True,
        )
