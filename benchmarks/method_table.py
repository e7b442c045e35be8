"""The statistics and the table of `benchmarks/methods.py`, kept apart so tests can check them.

Single runs at the demo budget move by 10-30 points with the seed, so a method
is described by the mean and the sample standard deviation over seeds, and
compared with the baseline seed by seed: run i of a method and run i of
Cluster Contrast share the seed (weights init, sampler, augmentation), so
their difference removes what the seed does to both. Nothing here imports
torch or unreid: it reads numbers, never runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class RunResult:
    """One (row, seed) run: test mAP / rank-1 as fractions, or why there are none."""

    seed: int
    run_dir: Path
    mAP: float | None = None
    rank1: float | None = None
    wall_s: float | None = None  # None: finished, but not timed by the benchmark
    error: str | None = None  # a failed run: what happened and where its log is
    start_mAP: float | None = None  # test mAP before training (epoch 0), when evaluated

    @property
    def ok(self) -> bool:
        return self.error is None and self.mAP is not None and self.rank1 is not None


def mean(values: list[float]) -> float:
    """Arithmetic mean; NaN for no values (a row whose every run failed)."""
    return sum(values) / len(values) if values else math.nan


def sample_std(values: list[float]) -> float:
    """Standard deviation with n - 1 in the denominator; NaN below two values."""
    if len(values) < 2:
        return math.nan
    m = mean(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


@dataclass(frozen=True)
class Paired:
    """Row minus baseline over the seeds both have: mean, sample std, wins, count."""

    n: int
    mean: float
    std: float
    wins: int  # seeds where the row is strictly above the baseline


def paired_difference(row: dict[int, float], baseline: dict[int, float]) -> Paired:
    """Seed-paired difference `row[s] - baseline[s]` over the seeds present in both."""
    seeds = sorted(set(row) & set(baseline))
    diffs = [row[s] - baseline[s] for s in seeds]
    return Paired(len(diffs), mean(diffs), sample_std(diffs), sum(d > 0 for d in diffs))


@dataclass(frozen=True)
class RowStats:
    """What one table row shows; `paired` is None for the baseline row itself."""

    label: str
    n: int
    map_mean: float
    map_std: float
    r1_mean: float
    r1_std: float
    wall_mean: float
    paired: Paired | None
    failed: list[RunResult] = field(default_factory=list)
    start_mean: float = math.nan  # mean test mAP before training, over the runs that have it


def row_stats(label: str, results: list[RunResult], baseline: list[RunResult] | None) -> RowStats:
    """Statistics of one row's runs; `baseline=None` marks the baseline row."""
    good = [r for r in results if r.ok]
    maps = [r.mAP for r in good]
    r1s = [r.rank1 for r in good]
    walls = [r.wall_s for r in good if r.wall_s is not None]
    paired = None
    if baseline is not None:
        base = {r.seed: r.mAP for r in baseline if r.ok}
        paired = paired_difference({r.seed: r.mAP for r in good}, base)  # type: ignore[misc]
    return RowStats(
        label,
        len(good),
        mean(maps),  # type: ignore[arg-type]
        sample_std(maps),  # type: ignore[arg-type]
        mean(r1s),  # type: ignore[arg-type]
        sample_std(r1s),  # type: ignore[arg-type]
        mean(walls),
        paired,
        [r for r in results if not r.ok],
        mean([r.start_mAP for r in good if r.start_mAP is not None]),  # type: ignore[misc]
    )


def pm(m: float, s: float) -> str:
    """`83.6 ± 2.9` in points (fractions × 100); one value alone when no std exists."""
    if math.isnan(m):
        return "–"
    return f"{100 * m:.1f}" if math.isnan(s) else f"{100 * m:.1f} ± {100 * s:.1f}"


def signed_pm(m: float, s: float) -> str:
    if math.isnan(m):
        return "–"
    head = f"{100 * m:+.1f}"
    return head if math.isnan(s) else f"{head} ± {100 * s:.1f}"


def clock(seconds: float) -> str:
    if math.isnan(seconds):
        return "–"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}:{secs:02d}"


COLUMNS = (
    "method", "seeds", "mAP at start", "mAP", "R1", "Δ mAP vs baseline", "wins", "wall / run"
)  # fmt: skip


def cells(s: RowStats) -> list[str]:
    failed = f" ({len(s.failed)} failed)" if s.failed else ""
    if s.paired is None:
        delta, wins = "(baseline)", ""
    else:
        delta = signed_pm(s.paired.mean, s.paired.std)
        wins = f"{s.paired.wins}/{s.paired.n}" if s.paired.n else "–"
    return [
        s.label,
        f"{s.n}{failed}",
        pm(s.start_mean, math.nan),
        pm(s.map_mean, s.map_std),
        pm(s.r1_mean, s.r1_std),
        delta,
        wins,
        clock(s.wall_mean),
    ]


def format_table(rows: list[RowStats], baseline_label: str, markdown: bool = False) -> str:
    """The rows as aligned text, or as a Markdown table (`markdown=True`) for the docs."""
    header = [c.replace("baseline", baseline_label) for c in COLUMNS]
    body = [cells(s) for s in rows]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(r) + " |" for r in body]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def line(r: list[str]) -> str:
        first = r[0].ljust(widths[0])
        return "  ".join(
            [first, *(c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True))]
        ).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, body)])


def failures(rows: list[RowStats]) -> list[str]:
    """One line per failed run: row, seed and the message (which names the log)."""
    return [f"{s.label}, seed {r.seed}: {r.error}" for s in rows for r in s.failed]


def group_table(
    title: str,
    seeds: list[int],
    base_label: str,
    rows: list[RowStats],
    overrides: list[str],
    markdown: bool = False,
) -> str:
    """A table under a header that says what was varied (train.seed) and what was fixed."""
    budget = f"; overrides: {' '.join(overrides)}" if overrides else ""
    header = [
        f"{title}{budget}.",
        f"Seeds {' '.join(map(str, seeds))} vary train.seed (weights init, P×K sampler, "
        "augmentation); the dataset stays the same.",
        "mAP at start: test mAP of the weights training starts from (epoch 0), mean; "
        "mAP / R1: test split after the last epoch, % mean ± sample std (n − 1) over seeds; "
        f"Δ mAP: row − {base_label} on the same seed, mean ± sample std over the seeds both "
        "have; wins: seeds where the row is higher.",
    ]
    return "\n".join([*header, "", format_table(rows, base_label, markdown), ""])
