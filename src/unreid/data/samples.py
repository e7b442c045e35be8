"""The value types every loader returns and every consumer reads.

Loaders turn a folder layout into lists of `Sample`; nothing downstream looks at
file names again, so dataset quirks stay in the `datasets` package.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Sample:
    """One image: where it is, which camera took it, and (if known) who it shows.

    `camera` is 0-based. `pid` is the dataset's own identity number (not
    relabelled); `None` for unlabeled data. `pid == 0` on Market-style test sets
    marks a distractor, which stays in the gallery and never matches.
    """

    path: str
    camera: int
    pid: int | None = None
    frame: int | None = None


class DatasetLayoutError(ValueError):
    """A dataset folder does not have the layout its loader expects."""


@dataclass
class ReidDataset:
    """Train / query / gallery lists. Unlabeled custom data has only `train`.

    `camera_names[i]` is what the user called camera `i` (a `folder` dataset's
    sub-folder or CSV label), so the report can show it; None where the layout
    only numbers cameras (Market-style file names): they show as c1..cN.
    """

    name: str
    root: str
    train: list[Sample]
    query: list[Sample] = field(default_factory=list)
    gallery: list[Sample] = field(default_factory=list)
    camera_names: list[str] | None = None

    def camera_name(self, index: int) -> str:
        return camera_name(index, self.camera_names)

    @property
    def has_test_split(self) -> bool:
        return bool(self.query) and bool(self.gallery)

    @property
    def train_is_labelled(self) -> bool:
        return bool(self.train) and all(s.pid is not None for s in self.train)

    def summary(self) -> str:
        def line(name: str, samples: list[Sample]) -> str:
            pids = {s.pid for s in samples if s.pid is not None}
            cams = {s.camera for s in samples}
            ids = f"{len(pids):6d} ids" if pids else "   unlabeled"
            return f"  {name:8s} {len(samples):8d} images {ids} {len(cams):4d} cameras"

        rows = [f"{self.name} ({self.root})", line("train", self.train)]
        if self.has_test_split:
            rows += [line("query", self.query), line("gallery", self.gallery)]
        return "\n".join(rows)


def camera_name(index: int, names: Sequence[str] | None) -> str:
    """Camera `index` as people know it: its name where there is one, else `c<index + 1>`.

    `c1` is Market-1501's own name for camera 0, so numbered layouts read as their
    file names do; an index past `names` (a stale list) falls back to the number.
    """
    if names is not None and 0 <= index < len(names):
        return names[index]
    return f"c{index + 1}"
