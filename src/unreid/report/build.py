"""`report.html` of a run folder: curves, ranked lists, contact sheets, histogram, config, timings.

Each part is built on its own and may be missing (a run in progress, an
unlabelled dataset, a deleted checkpoint): the page then says what is missing
and why, and the other parts still appear. A report is written at the end of
training, so building it must never fail a finished run; an unexpected error
in one part is shown in that part and logged, not raised.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from unreid.report.clusters import contact_sheets_html
from unreid.report.html import data_uri, esc, failed, figure, missing, page, table
from unreid.report.plots import line_png
from unreid.report.rankings import ranked_lists_html
from unreid.report.runlog import RunLog, read_log

__all__ = ["REPORT_NAME", "write_report"]

log = logging.getLogger("unreid")
REPORT_NAME = "report.html"


def read_config(run_dir: Path) -> tuple[dict[str, Any] | None, str]:
    path = run_dir / "config.yaml"
    if not path.is_file():
        return None, "config.yaml is missing"
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        return None, f"config.yaml is not valid YAML ({err})"
    if not isinstance(data, dict):
        return None, f"config.yaml holds a {type(data).__name__}, not a mapping"
    return data, ""


def curves_html(runlog: RunLog) -> str:
    panels: list[tuple[str, str, dict[str, Any], dict[str, bool]]] = []
    retrieval = {
        f"{split} {label}": runlog.series(split, key)
        for split in ("test", "val")
        for key, label in (("mAP", "mAP"), ("rank1", "R1"))
    }
    panels.append(("retrieval (test / val)", "%", retrieval, {"percent": True}))
    panels.append(("pseudo identities", "clusters", {"clusters": runlog.series("clusters")}, {}))
    ratio = {"outlier ratio": runlog.series("cluster_sizes", "outlier_ratio")}
    panels.append(("outlier ratio", "% of training images", ratio, {"percent": True}))
    quality = {k.upper(): runlog.series("pseudo_label_quality", k) for k in ("ari", "nmi")}
    panels.append(("pseudo-label quality vs ground truth", "score", quality, {}))
    losses = {name: runlog.series("losses", name) for name in runlog.loss_names()}
    panels.append(("losses", "value", losses, {}))
    panels.append(("learning rate", "lr", {"lr": runlog.series("lr")}, {"logy": True}))
    why = {
        "retrieval (test / val)": "no evaluation recorded yet (or the dataset has no test split)",
        "pseudo-label quality vs ground truth": "no ground-truth identities: ARI/NMI need them",
    }
    figs, notes = [], []
    for title, ylabel, series, opts in panels:
        present = {k: v for k, v in series.items() if v[0]}
        if not present:
            notes.append(missing(f"No {title} curve: {why.get(title, 'not in log.jsonl yet')}."))
            continue
        png = line_png(title, ylabel, present, **opts)
        figs.append(figure(data_uri("image/png", png), f"{title} per epoch"))
    problems = "".join(missing(p) for p in runlog.problems)
    return problems + f'<div class="figs">{"".join(figs)}</div>' + "".join(notes)


def _pct(rec: dict[str, Any], split: str, key: str) -> str:
    value = rec.get(split, {}).get(key) if isinstance(rec.get(split), dict) else None
    return f"{100 * value:.1f}" if isinstance(value, (int, float)) else ""


def timings_html(runlog: RunLog) -> str:
    if not runlog.records:
        return missing("No epochs recorded yet.")
    rows = []
    for r in runlog.records:
        losses = r.get("losses") if isinstance(r.get("losses"), dict) else {}
        ratio = (r.get("cluster_sizes") or {}).get("outlier_ratio")
        rows.append(
            [
                r["epoch"] if r["epoch"] else "0 (untrained)",
                r.get("seconds", ""),
                r.get("clusters", ""),
                f"{100 * ratio:.1f}" if isinstance(ratio, (int, float)) else "",
                f"{sum(losses.values()):.3f}" if losses else "",
                f"{r['lr']:.2e}" if isinstance(r.get("lr"), (int, float)) else "",
                _pct(r, "test", "mAP"),
                _pct(r, "test", "rank1"),
                _pct(r, "val", "mAP"),
            ]
        )
    total = sum(
        r.get("seconds", 0) for r in runlog.epochs if isinstance(r.get("seconds"), (int, float))
    )
    header = ["epoch", "seconds", "clusters", "outliers %", "loss", "lr", "test mAP", "test R1"]
    return f"<p>{len(runlog.epochs)} epoch(s), {total:.0f} s of training in all.</p>" + table(
        [*header, "val mAP"], rows
    )


def summary_html(run_dir: Path) -> str:
    """The demo's before/after figures (`summary.json`), when the run has them."""
    path = run_dir / "summary.json"
    if not path.is_file():
        return ""
    try:
        summary = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        return missing(f"summary.json is not readable JSON ({err}).")
    if not isinstance(summary, dict):
        return missing("summary.json holds no mapping.")
    rows = [
        [name, _pct({"m": value}, "m", "mAP"), _pct({"m": value}, "m", "rank1")]
        for name, value in summary.items()
        if isinstance(value, dict) and "mAP" in value
    ]
    took = summary.get("seconds")
    head = f"<p>summary.json: the whole command took {took} s.</p>" if took else ""
    return head + (table(["model", "test mAP", "test R1"], rows) if rows else "")


def intro_html(run_dir: Path, config: dict[str, Any] | None, note: str, runlog: RunLog) -> str:
    if config is None:
        return missing(f"No run config: {note}; the ranked lists cannot name a dataset.")
    train = config.get("train") if isinstance(config.get("train"), dict) else {}
    data = config.get("data") if isinstance(config.get("data"), dict) else {}
    done, planned = len(runlog.epochs), train.get("epochs", "?")
    state = "finished" if done == planned else f"{done} of {planned} epochs recorded"
    last = runlog.epochs[-1] if runlog.epochs else {}
    final = (
        f" Last test: mAP {_pct(last, 'test', 'mAP')}, R1 {_pct(last, 'test', 'rank1')}."
        if isinstance(last.get("test"), dict)
        else ""
    )
    return (
        f"<p>Method <b>{esc(config.get('method', '?'))}</b> on <b>{esc(data.get('dataset'))}</b>"
        f" ({esc(data.get('root'))}), {esc(data.get('height'))}x{esc(data.get('width'))} images;"
        f" {esc(state)}.{esc(final)} Run folder: <code>{esc(run_dir)}</code>.</p>"
    )


def _guarded(part: str, build: Callable[[], Any], fallback: Any) -> Any:
    try:
        return build()
    except Exception as err:  # a report part must not sink the run
        log.warning("report: the %s could not be built: %s", part, err)
        return fallback(err)


def write_report(run_dir: str | Path, *, progress: bool = False) -> Path:
    """Write `run_dir/report.html` (one self-contained file) and return its path."""
    started = time.perf_counter()
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder {run_dir} does not exist")
    config, note = read_config(run_dir)
    runlog = read_log(run_dir / "log.jsonl")
    curves = _guarded("training curves", lambda: curves_html(runlog), lambda e: failed("curves", e))
    ranked = _guarded(
        "ranked lists",
        lambda: ranked_lists_html(run_dir, config, progress),
        lambda e: failed("ranked lists", e),
    )
    sheets, hist = _guarded(
        "contact sheets",
        lambda: contact_sheets_html(run_dir),
        lambda e: (failed("contact sheets", e), failed("histogram", e)),
    )
    config_body = (
        f"<pre>{esc((run_dir / 'config.yaml').read_text())}</pre>"
        if config is not None
        else missing(f"No config to show: {note}.")
    )
    sections = [
        ("curves", "Training curves", curves),
        ("ranked", "Ranked lists", ranked),
        ("clusters", "Cluster contact sheets", sheets),
        ("sizes", "Cluster sizes", hist),
        ("timings", "Epochs and timings", timings_html(runlog) + summary_html(run_dir)),
        ("config", "Config", config_body),
    ]
    intro = intro_html(run_dir, config, note, runlog)
    name = config.get("name", run_dir.name) if config else run_dir.name
    footer = (
        f"unreid run report, built {time.strftime('%Y-%m-%d %H:%M:%S')} in "
        f"{time.perf_counter() - started:.1f} s"
    )
    out = run_dir / REPORT_NAME
    tmp = out.with_suffix(".html.tmp")
    tmp.write_text(page(f"unreid run report: {name}", intro, sections, footer), encoding="utf-8")
    tmp.replace(out)
    return out
