"""Run folders side by side: `compare` lines up differing config keys and final and best
metrics, and writes summary.csv and the overlay figures."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nncli.errors import NncliError
from nncli.figures.overlays import plot_overlays
from nncli.metrics import direction
from nncli.runs.files import json_safe, write_atomic
from nncli.runs.folder import metric_name, new_or_empty
from nncli.runs.rundata import LAYERS, RunData, find_runs
from nncli.tables import Format, render

BASE_COLUMNS = ("run", "status", "epochs", "params", "duration_s")
SORTABLE = ("epochs", "params", "duration_s")  # base columns --sort takes
BEST = " best"  # `test_accuracy best`: the best value over the epochs
BEST_EPOCH = " best epoch"  # `test_accuracy best epoch`: the first epoch that reached it
HELD_OUT = ("val", "test")
NAMED_IN_WARNING = 5
SUMMARY = "summary.csv"
MODEL = "model"  # the column of each run's architecture (RunData.architecture)
LABEL_CHARS = 60  # a legend label's most characters: figures stay readable


@dataclass
class Comparison:
    """The compared runs in table order, their rows and columns, and what to warn about."""

    runs: list[RunData]
    rows: list[dict[str, Any]]
    columns: list[str]
    same: dict[str, Any]  # config keys equal in every run
    differing: list[str]  # config keys shown as columns
    metric_columns: list[str]  # e.g. train_loss, test_accuracy (each has its best columns)
    labels: list[str]  # legend label of each run: what differs, else its name
    warnings: list[str] = field(default_factory=list)
    # the terminal table's and markdown's columns: the `model` column instead of each
    # layer's keys when the layer stacks differ in shape (csv and json have every key)
    table_columns: list[str] = field(default_factory=list)

    def text_rows(self) -> list[dict[str, Any]]:
        """Rows for table, csv and markdown: config values as YAML writes them (exact, where
        a table would round 0.00012345), durations to a tenth of a second."""
        rows = []
        for raw in self.rows:
            row = dict(raw)
            for key in self.differing:
                if row.get(key) is not None:
                    row[key] = text(row[key])
            duration = row.get("duration_s")
            if isinstance(duration, int | float):
                row["duration_s"] = f"{duration:.1f}"
            rows.append(row)
        return rows

    def json(self) -> str:
        """`{"same": {...}, "runs": [...]}`; NaN and infinity as null."""
        runs = [{c: json_safe(row.get(c)) for c in self.columns} for row in self.rows]
        return json.dumps({"same": json_safe(self.same), "runs": runs}, indent=2)


def text(value: Any) -> str:
    """A config value as YAML writes it: `true`, `null`, `[0.9, 0.999]`, `0.01`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, list):
        return "[" + ", ".join(text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {text(v)}" for k, v in value.items()) + "}"
    return str(value)


# comparing


def compare(
    paths: Sequence[Path],
    sort: str | None = None,
    top: int | None = None,
    metrics: Sequence[str] | None = None,
    smoke: bool = False,
) -> Comparison:
    """Read the runs under `paths` and line them up; NncliError if none is usable.

    Rows keep the order given unless `sort` (a metric column such as `val_accuracy`, best
    first; a bare metric name means its held-out split; or any config key or base column)
    or `top` (ranked by `sort`, else by the first run's monitor column) asks otherwise.
    Runs trained with --smoke are left out (with a warning) unless `smoke`.
    """
    found, skipped = find_runs(paths)
    runs: list[RunData] = []
    unreadable: list[str] = []
    for path in found:
        try:
            runs.append(RunData.read(path))
        except NncliError as exc:
            unreadable.append(f"{path} ({exc})")
    warnings = []
    if skipped:
        warnings.append(
            f"skipped {_count(len(skipped), 'path')} that "
            f"{'is not a run folder' if len(skipped) == 1 else 'are not run folders'}: "
            + _names([str(p) for p in skipped])
        )
    if unreadable:
        warnings.append(
            f"left out {_count(len(unreadable), 'unreadable run')}: {_names(unreadable)}"
        )
    smoked = [run.name for run in runs if run.info.smoke and not smoke]
    if smoked:
        runs = [run for run in runs if not run.info.smoke]
        warnings.append(
            f"left out {_count(len(smoked), 'smoke run')} (--smoke includes them): "
            + _names(smoked)
        )
    if not runs:
        detail = "; ".join(warnings) if warnings else "no paths given"
        raise NncliError(f"no usable run to compare ({detail})")

    everything = list(dict.fromkeys(c for run in runs for c in run.columns))
    shown = _choose_metrics(everything, metrics)
    if sort is None and top is not None and everything:
        monitor = runs[0].info.monitor
        sort = monitor if monitor in everything else everything[0]
    if sort is not None:
        runs, sorting = _sorted(runs, sort, everything)
        warnings += sorting
    if top is not None:
        runs = runs[:top]

    same, differing = _split_config(runs)
    # stacks of different shapes: per-index keys compare unrelated layers; one word each
    reshaped = len({tuple(run.layer_types) for run in runs}) > 1
    model = [MODEL] if reshaped else []
    compact = [k for k in differing if not (reshaped and k.startswith(LAYERS))]
    rows = []
    for run in runs:
        row = run.base()
        if reshaped:
            row[MODEL] = run.architecture
        row.update({k: run.config.get(k) for k in differing})
        for column in shown:
            best = run.best(column)
            row[column] = run.final(column)
            row[column + BEST] = best[0] if best else None
            row[column + BEST_EPOCH] = best[1] if best else None
        rows.append(row)
    metric_columns = [c for m in shown for c in (m, m + BEST, m + BEST_EPOCH)]
    columns = [*BASE_COLUMNS, *model, *differing, *metric_columns]
    table = [*BASE_COLUMNS, *model, *compact, *metric_columns]
    labels = _labels(runs, compact, reshaped)
    return Comparison(runs, rows, columns, same, differing, shown, labels, warnings, table)


def _choose_metrics(everything: list[str], wanted: Sequence[str] | None) -> list[str]:
    """The metric columns to show: all, or those named (full `test_accuracy` or bare `loss`)."""
    if not wanted:
        return everything
    chosen: list[str] = []
    for name in wanted:
        matches = [c for c in everything if c == name or metric_name(c) == name]
        if not matches:
            raise NncliError(
                f"no run has a metric {name!r}; choose from "
                + ", ".join([*dict.fromkeys(metric_name(c) for c in everything), *everything])
            )
        chosen += matches
    # in metrics.csv order, each once
    return [c for c in everything if c in chosen]


def _sorted(
    runs: list[RunData], key: str, everything: list[str]
) -> tuple[list[RunData], list[str]]:
    """Runs best first by a metric's best value, and what to warn about; a config key or base
    column sorts ascending. Each run is ranked by the first of the column asked for, then its
    metric's val, test and train columns that it has: a bare `accuracy` is each run's best
    held-out split. Runs with none of them go last, in the order given."""
    column = key.removesuffix(BEST)
    split, _, rest = column.partition("_")
    name = rest if rest and split in (*HELD_OUT, "train") else column
    candidates = list(dict.fromkeys([column, *(f"{s}_{name}" for s in (*HELD_OUT, "train"))]))
    if any(c in everything for c in candidates):
        used = {run.path: next((c for c in candidates if run.best(c)), None) for run in runs}
        main = next((c for c in candidates if c in used.values()), candidates[0])
        if column in everything:
            main = column
        sign = 1.0 if direction(main) == "min" else -1.0

        def metric_key(run: RunData) -> tuple[int, float]:
            found = used[run.path]
            best = run.best(found) if found else None
            return (0, sign * best[0]) if best else (1, 0.0)

        return sorted(runs, key=metric_key), _sort_warnings(runs, used, main, name)

    if key in SORTABLE or any(key in run.config for run in runs):

        def value_key(run: RunData) -> tuple[int, int, Any]:
            value = run.base()[key] if key in SORTABLE else run.config.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                return (0, 0, value) if math.isfinite(value) else (1, 0, 0)
            return (1, 0, 0) if value is None else (0, 1, text(value))

        return sorted(runs, key=value_key), []
    raise NncliError(
        f"cannot sort by {key!r}: it is neither a metric nor a config key of these runs; "
        f"metrics: {', '.join(everything) or 'none'}"
    )


def _sort_warnings(
    runs: list[RunData], used: dict[Path, str | None], main: str, name: str
) -> list[str]:
    """Which runs were ranked by another column than `main`, and which by none."""
    others: dict[str | None, list[str]] = {}
    for run in runs:
        if used[run.path] != main:
            others.setdefault(used[run.path], []).append(run.name)
    warnings = [
        f"sorted by {main}; {_count(len(names), 'run')} without it "
        f"{'is' if len(names) == 1 else 'are'} ranked by {found}: {_names(names)}"
        for found, names in others.items()
        if found is not None
    ]
    if None in others:
        names = others[None]
        warnings.append(
            f"{_count(len(names), 'run')} without {name} "
            f"{'goes' if len(names) == 1 else 'go'} last: {_names(names)}"
        )
    return warnings


def _split_config(runs: list[RunData]) -> tuple[dict[str, Any], list[str]]:
    """(keys equal in every run with their value, keys that differ or are missing somewhere)."""
    keys = list(dict.fromkeys(k for run in runs for k in run.config))
    same: dict[str, Any] = {}
    differing: list[str] = []
    missing = object()
    for key in keys:
        first = runs[0].config.get(key, missing)
        if first is not missing and all(
            _equal(run.config.get(key, missing), first) for run in runs[1:]
        ):
            same[key] = first
        else:
            differing.append(key)
    return same, differing


def _equal(a: Any, b: Any) -> bool:
    # True == 1 in Python, but `bias: true` and `units: 1` are different settings
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def _labels(runs: list[RunData], differing: list[str], reshaped: bool) -> list[str]:
    """A short legend label per run: its name where names differ, its architecture and size
    where stacks differ, then `optimizer.lr=0.01, ...`, cut to LABEL_CHARS; the run's
    folder name where that is empty or shared with another run."""
    labels = []
    for run in runs:
        name = [text(run.config["name"])] if "name" in differing and "name" in run.config else []
        size = f"{run.info.n_params:,} params" if run.info.n_params is not None else "? params"
        shape = [f"{_cut(run.architecture, LABEL_CHARS // 2)} ({size})"] if reshaped else []
        rest = [f"{k}={text(run.config[k])}" for k in differing if k in run.config and k != "name"]
        labels.append(_join([*name, *shape, *rest], LABEL_CHARS))
    counts = {label: labels.count(label) for label in labels}
    return [
        label if label and counts[label] == 1 else (f"{label} ({run.name})" if label else run.name)
        for label, run in zip(labels, runs, strict=True)
    ]


def _join(parts: list[str], limit: int) -> str:
    """`a, b, c` with as many whole parts as fit in `limit` characters, `...` for the rest."""
    joined = ""
    for part in parts:
        longer = f"{joined}, {part}" if joined else part
        if len(longer) > limit:
            return f"{joined}, ..." if joined else _cut(part, limit)
        joined = longer
    return joined


def _cut(word: str, limit: int) -> str:
    """`dense16-relu-dense16-relu...`: `word` cut after a whole `-` part to fit `limit`."""
    if len(word) <= limit:
        return word
    head = word[: limit - 3]
    end = head.rfind("-")
    return (head[:end] if end > 0 else head) + "..."


# writing


def out_dir(out: Path) -> Path:
    """Create and return the folder for summary.csv and figures; never reuse a full one."""
    return new_or_empty(out)


def write_outputs(comparison: Comparison, folder: Path) -> list[Path]:
    """summary.csv (the table's columns) and one overlay figure per metric, in `folder`."""
    summary = folder / SUMMARY
    text_csv = str(render(comparison.text_rows(), comparison.columns, Format.csv))
    write_atomic(summary, text_csv + "\n")
    return [summary, *plot_overlays(comparison, folder)]


# small helpers


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:NAMED_IN_WARNING])
    more = len(names) - NAMED_IN_WARNING
    return f"{shown} and {more} more" if more > 0 else shown
