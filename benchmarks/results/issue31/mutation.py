"""The learning test's mutation check: break a method, run the test's comparison, print it.

    python benchmarks/results/issue31/mutation.py > benchmarks/results/issue31/mutation.log

Every registered method with its loss multiplied by 0 (the network then moves only by
Adam's weight decay and the BN statistics), and HHCL with its memory update disabled
(the memories stay at each epoch's cluster means), each on seed 0 of the test's recipe
against the test's null and margin from benchmarks/results/learning.jsonl. A mutation
the test catches prints "FAILS the test".
"""

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # benchmarks/
import learning  # noqa: E402
import learning_recipes as lr  # noqa: E402
from results_file import read_results  # noqa: E402

import unreid.engine.loop as loop  # noqa: E402

BUILD = loop.build_run


def zero_loss(method):
    losses = method.losses
    method.losses = lambda batch: {k: 0 * v for k, v in losses(batch).items()}


def no_memory_update(method):
    method.update_memories = lambda batch: None


MUTATIONS = [(m, "loss x 0", zero_loss) for m in sorted(lr.RECIPES)]
MUTATIONS.append(("hhcl", "memory update disabled", no_memory_update))

lines = read_results(learning.LEARNING_RESULTS, learning.FIELDS)
with tempfile.TemporaryDirectory() as tmp:
    sets, meta = learning.write_sets(Path(tmp)), learning.provenance()
    print(f"commit {meta['commit']}, {meta['machine']}, torch {meta['torch']}", flush=True)
    for method, what, mutate in MUTATIONS:
        m = lr.measured(lines, method)
        if 0 not in m.null:
            print(f"{method}: not measured (python benchmarks/learning.py --methods {method})")
            continue

        def build(*args, mutate=mutate):
            run = BUILD(*args)
            mutate(run.method)  # this run's method instance only
            return run

        loop.build_run = build
        try:
            run = learning.run_once(method, 0, "trained", sets, Path(tmp) / method, meta)
        finally:
            loop.build_run = BUILD
        null = m.null[0]
        gap = run["mAP"] - null
        verdict = "FAILS the test" if gap <= m.margin else "passes the test"
        print(
            f"{method}, {what}: trained {100 * run['mAP']:.1f} vs null {100 * null:.1f} "
            f"(gap {100 * gap:+.1f}, margin {100 * m.margin:.1f}): {verdict}; "
            f"unmutated seed 0: trained {100 * m.trained[0]:.1f}",
            flush=True,
        )
