"""Kill points for the fault-injection test: a real SIGKILL at a named place in a real run.

With `UNREID_KILL_AT=<point>:<n>` in the environment, the process kills itself
(SIGKILL: no cleanup, no `finally`, like a power cut or the OOM killer) the
n-th time it reaches `kill_point("<point>")`. Without the variable a kill
point is one dictionary lookup. The points: `extract` (a batch of feature
extraction), `cluster` (pseudo labels computed), `step` (an optimizer step),
`checkpoint` (a checkpoint's bytes written, not yet renamed into place).
"""

from __future__ import annotations

import os
import signal
from collections import Counter

POINTS = ("extract", "cluster", "step", "checkpoint")
_reached: Counter[str] = Counter()


def kill_point(name: str) -> None:
    spec = os.environ.get("UNREID_KILL_AT")
    if not spec:
        return
    point, _, count = spec.partition(":")
    if point != name:
        return
    _reached[name] += 1
    if _reached[name] == int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)
