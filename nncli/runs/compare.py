"""Run folders side by side: `compare` (differing config keys, final and best metrics, overlay
figures) and `list_runs` (newest first); reads only run.json, config.yaml and metrics.csv."""

from __future__ import annotations

import contextlib
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import yaml

from nncli.errors import NncliError, first_line
from nncli.runs.folder import (
    CONFIG,
    METRICS,
    NOT_METRICS,
    RUN_JSON,
    STATUSES,
    direction,
    is_run,
    json_safe,
    metric_name,
    new_folder,
)
from nncli.tables import Format, render

BASE_COLUMNS = ("run", "status", "epochs", "params", "duration_s")
RUNS_COLUMNS = ("run", "status", "started", "epochs", "duration_s", "monitor", "best", "best epoch")
UNREADABLE = "unreadable"
BEST = " best"  # `test_accuracy best`: the best value over the epochs
BEST_EPOCH = " best epoch"  # `test_accuracy best epoch`: the first epoch that reached it
HELD_OUT = ("val", "test")
LEGEND_RUNS = 12  # more run entries than this make a legend taller than the figure
SMOOTH_RUNS = 50  # antialiased lines up to this many runs
NAMED_IN_WARNING = 5
SUMMARY = "summary.csv"
COMPARISONS = "comparisons"

# The C loader reads our own resolved configs ~8x faster (500: 0.08 s, not 0.66 s); we need
# no line numbers for files nncli wrote itself.
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class RunData:
    """What compare needs of one run folder, read and checked."""

    path: Path
    info: dict[str, Any]
    config: dict[str, Any]  # flattened: `optimizer.lr` -> 0.01
    rows: list[dict[str, float]]  # metrics.csv, one dict per epoch
    columns: list[str]  # metric columns of metrics.csv, in file order

    @property
    def name(self) -> str:
        return self.path.name

    def best(self, column: str) -> tuple[float, int] | None:
        """(value, epoch) of the best finite value of `column`; ties keep the first epoch."""
        lower = direction(column) == "min"
        found: tuple[float, int] | None = None
        for row in self.rows:
            value = row.get(column, math.nan)
            if not math.isfinite(value):
                continue
            if found is None or (value < found[0] if lower else value > found[0]):
                found = (value, int(row["epoch"]))
        return found

    def final(self, column: str) -> float | None:
        value = self.rows[-1].get(column) if self.rows else None
        return value if value is not None and math.isfinite(value) else None

    @property
    def status(self) -> str:
        status = str(self.info.get("status", "unknown"))
        last = self.rows[-1] if self.rows else {}
        losses = [v for k, v in last.items() if k.endswith("_loss")]
        nan = any(not math.isfinite(v) for v in losses)
        return f"{status} (diverged)" if nan and status != "diverged" else status


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


# reading


def find_runs(paths: Iterable[Path]) -> tuple[list[Path], list[Path]]:
    """(run folders, skipped paths): each path is a run folder or a folder of run folders."""
    found: dict[Path, Path] = {}
    skipped: list[Path] = []
    for path in paths:
        if is_run(path):
            found.setdefault(path.resolve(), path)
            continue
        try:
            inside = sorted(p for p in path.iterdir() if is_run(p)) if path.is_dir() else []
        except OSError:  # unreadable folder: reported with the other skipped paths
            inside = []
        if not inside:
            skipped.append(path)
        for run in inside:
            found.setdefault(run.resolve(), run)
    return list(found.values()), skipped


def read_run(path: Path) -> RunData:
    """A run folder's three files, checked; NncliError naming the file that is unreadable."""
    try:
        info = json.loads((path / RUN_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise NncliError(f"{RUN_JSON}: {first_line(exc)}") from None
    if not isinstance(info, dict):
        raise NncliError(f"{RUN_JSON} does not hold an object")
    try:
        config = yaml.load((path / CONFIG).read_text(encoding="utf-8"), Loader=_LOADER)
    except FileNotFoundError:
        raise NncliError(f"{CONFIG} is missing") from None
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise NncliError(f"{CONFIG}: {first_line(exc)}") from None
    if not isinstance(config, dict):
        raise NncliError(f"{CONFIG} does not hold a mapping")
    config = _plain(config, [_MAX_CONFIG_VALUES])
    running = info.get("status") == "running"
    header, rows = _read_metrics(path / METRICS, running)
    done = info.get("epochs_done") or 0
    # run.json is rewritten after each row reaches metrics.csv, so fewer rows means lost data;
    # except while a resumed run trains again the epochs after its checkpoint
    if isinstance(done, int) and len(rows) < done and not running:
        raise NncliError(f"{METRICS} has {len(rows)} rows but {RUN_JSON} says {done} epochs done")
    columns = [c for c in header if c not in NOT_METRICS]
    return RunData(path, info, flatten(config), rows, columns)


_MAX_CONFIG_VALUES = 100_000  # a resolved config holds hundreds; aliases could make billions
_MAX_CONFIG_DEPTH = 64


def _plain(value: Any, budget: list[int], depth: int = 0) -> Any:
    """A copy of a loaded config.yaml made of dicts with text keys, lists and plain values
    (a date or set becomes its text). NncliError for a file that refers to itself or
    expands past the budget: aliases are shared when loaded, but copied here and by flatten.
    """
    budget[0] -= 1
    if budget[0] < 0 or depth > _MAX_CONFIG_DEPTH:
        raise NncliError(f"{CONFIG} nests or repeats too much (aliases?); nncli writes it plain")
    if isinstance(value, dict):
        return {str(k): _plain(v, budget, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v, budget, depth + 1) for v in value]
    if value is None or isinstance(value, str | int | float):
        return value
    return str(value)


def _read_metrics(file: Path, running: bool = False) -> tuple[list[str], list[dict[str, float]]]:
    """Header and rows of metrics.csv; NncliError when a line is cut or not numbers (a
    running run's last line may be one being written: it is left out)."""
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return [], []  # the run ended (or is) before its first epoch
    except (OSError, ValueError) as exc:
        raise NncliError(f"{METRICS}: {first_line(exc)}") from None
    if running:
        text = text[: text.rfind("\n") + 1]
    if not text:
        return [], []
    # every row is written whole with its newline, so a missing one means the file was cut
    if not text.endswith("\n"):
        raise NncliError(f"{METRICS} is truncated (its last line is incomplete)")
    lines = text.splitlines()
    header = lines[0].split(",")
    if "epoch" not in header:
        raise NncliError(f"{METRICS} has no epoch column in its header")
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        cells = line.split(",")
        if len(cells) != len(header):
            raise NncliError(f"{METRICS} line {number} has {len(cells)} of {len(header)} cells")
        try:
            rows.append(
                {k: float(v) if v else math.nan for k, v in zip(header, cells, strict=True)}
            )
        except ValueError:
            raise NncliError(f"{METRICS} line {number} is not numbers") from None
        if not math.isfinite(rows[-1]["epoch"]):
            raise NncliError(f"{METRICS} line {number} has no epoch")
    return header, rows


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """`{'optimizer': {'lr': 0.01}}` -> `{'optimizer.lr': 0.01}`; list items by index.

    A list of plain values (`betas: [0.9, 0.999]`, `metrics: [accuracy]`) stays one value.
    """
    if isinstance(value, dict) and value:
        items: Iterable[tuple[Any, Any]] = value.items()
    elif isinstance(value, list) and any(isinstance(v, dict | list) for v in value):
        items = enumerate(value)
    else:
        return {prefix: value}
    flat: dict[str, Any] = {}
    for key, item in items:
        flat.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    return flat


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
) -> Comparison:
    """Read the runs under `paths` and line them up; NncliError if none is usable.

    Rows keep the order given unless `sort` (a metric column such as `val_accuracy`, best
    first; a bare metric name means its held-out split; or any config key or base column)
    or `top` (ranked by `sort`, else by the first run's monitor column) asks otherwise.
    """
    found, skipped = find_runs(paths)
    runs: list[RunData] = []
    unreadable: list[str] = []
    for path in found:
        try:
            runs.append(read_run(path))
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
    if not runs:
        detail = "; ".join(warnings) if warnings else "no paths given"
        raise NncliError(f"no usable run to compare ({detail})")

    everything = list(dict.fromkeys(c for run in runs for c in run.columns))
    shown = _choose_metrics(everything, metrics)
    if sort is None and top is not None and everything:
        monitor = runs[0].info.get("monitor")
        sort = monitor if monitor in everything else everything[0]
    if sort is not None:
        runs = _sorted(runs, sort, everything)
    if top is not None:
        runs = runs[:top]

    same, differing = _split_config(runs)
    rows = []
    for run in runs:
        row: dict[str, Any] = {
            "run": run.name,
            "status": run.status,
            "epochs": run.info.get("epochs_done"),
            "params": run.info.get("n_params"),
            "duration_s": run.info.get("duration_s"),
        }
        row.update({k: run.config.get(k) for k in differing})
        for column in shown:
            best = run.best(column)
            row[column] = run.final(column)
            row[column + BEST] = best[0] if best else None
            row[column + BEST_EPOCH] = best[1] if best else None
        rows.append(row)
    columns = [
        *BASE_COLUMNS,
        *differing,
        *(c for m in shown for c in (m, m + BEST, m + BEST_EPOCH)),
    ]
    return Comparison(
        runs, rows, columns, same, differing, shown, _labels(runs, differing), warnings
    )


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


def _sorted(runs: list[RunData], key: str, everything: list[str]) -> list[RunData]:
    """Runs best first by a metric column's best value; others ascending; missing last."""
    column = key.removesuffix(BEST)
    if column not in everything:
        held = [f"{s}_{column}" for s in (*HELD_OUT, "train") if f"{s}_{column}" in everything]
        column = held[0] if held else column
    if column in everything:
        sign = 1.0 if direction(column) == "min" else -1.0

        def metric_key(run: RunData) -> tuple[int, float]:
            best = run.best(column)
            return (0, sign * best[0]) if best else (1, 0.0)

        return sorted(runs, key=metric_key)

    base = {"epochs": "epochs_done", "params": "n_params", "duration_s": "duration_s"}
    if key in base or any(key in run.config for run in runs):

        def value_key(run: RunData) -> tuple[int, int, Any]:
            value = run.info.get(base[key]) if key in base else run.config.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                return (0, 0, value) if math.isfinite(value) else (1, 0, 0)
            return (1, 0, 0) if value is None else (0, 1, text(value))

        return sorted(runs, key=value_key)
    raise NncliError(
        f"cannot sort by {key!r}: it is neither a metric nor a config key of these runs; "
        f"metrics: {', '.join(everything) or 'none'}"
    )


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


def _labels(runs: list[RunData], differing: list[str]) -> list[str]:
    """`optimizer.lr=0.01, model.layers.0.units=8` per run; the run name where that is empty
    or shared with another run."""
    labels = [
        ", ".join(f"{k}={text(run.config[k])}" for k in differing if k in run.config)
        for run in runs
    ]
    counts = {label: labels.count(label) for label in labels}
    return [
        label if label and counts[label] == 1 else (f"{label} ({run.name})" if label else run.name)
        for label, run in zip(labels, runs, strict=True)
    ]


# writing


def out_dir(out: Path | None, first_run: Path) -> Path:
    """Create and return the folder for summary.csv and figures; never reuse a full one.

    Default: `<runs folder>/../comparisons/<timestamp>_<suffix>/`.
    """
    if out is not None:
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise NncliError(f"{out} already exists and is not empty; choose another --out")
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise NncliError(f"cannot create {out}: {exc.strerror}") from None
        return out
    parent = first_run.absolute().parent.parent / COMPARISONS
    with contextlib.suppress(ValueError):  # outside the working folder: keep it absolute
        parent = parent.relative_to(Path.cwd())
    return new_folder(parent)


def write_outputs(comparison: Comparison, folder: Path) -> list[Path]:
    """summary.csv (the table's columns) and one overlay figure per metric, in `folder`."""
    summary = folder / SUMMARY
    text_csv = render(comparison.text_rows(), comparison.columns, Format.csv)
    summary.write_text(text_csv + "\n", encoding="utf-8")
    return [summary, *plot_overlays(comparison, folder)]


def plot_overlays(comparison: Comparison, folder: Path) -> list[Path]:
    """`<metric>.png`: one line per run and split, a colour per run, train dashed, val solid,
    test solid (dotted when there is a val split too)."""
    # Figure without pyplot: no global state, and pyplot's import alone costs ~0.1 s
    import numpy as np
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    from nncli.figures.plots import CURVE_FIGSIZE, DPI

    runs = comparison.runs
    colours = _colours(len(runs))
    few = len(runs) <= LEGEND_RUNS
    by_metric: dict[str, list[str]] = {}
    for column in comparison.metric_columns:
        by_metric.setdefault(metric_name(column), []).append(column)

    written: list[Path] = []
    for metric, columns in by_metric.items():
        splits = [c.split("_", 1)[0] for c in columns]
        styles = {s: _style(s, splits) for s in splits}
        fig = Figure(figsize=CURVE_FIGSIZE)
        ax = fig.add_subplot()
        for split, column in zip(splits, columns, strict=True):
            lines, line_colours = [], []
            for run, colour in zip(runs, colours, strict=True):
                points = np.array(
                    [(row["epoch"], row.get(column, math.nan)) for row in run.rows], dtype=float
                ).reshape(-1, 2)
                points = points[np.isfinite(points).all(axis=1)]
                if len(points):
                    lines.append(points)
                    line_colours.append(colour)
            if not lines:
                continue
            # one collection per split draws hundreds of runs about as fast as one line
            ax.add_collection(
                LineCollection(
                    lines,
                    colors=line_colours,
                    linestyles=styles[split],
                    linewidths=1.5 if few else 1.0,
                    # smoothing hundreds of overlapping lines doubles the drawing time
                    antialiaseds=len(runs) <= SMOOTH_RUNS,
                )
            )
            if few:  # dots make a one- or two-epoch run visible; with many runs they only blur
                for points, colour in zip(lines, line_colours, strict=True):
                    ax.plot(points[:, 0], points[:, 1], "o", color=colour, markersize=2.5)
        ax.autoscale_view()
        ax.set_title(f"compare: {metric}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        if few:
            handles: list[Any] = [
                Line2D([], [], color=c, label=label)
                for c, label in zip(colours, comparison.labels, strict=True)
            ]
        else:  # a label per run would be unreadable, and slow: name the two ends of the scale
            handles = [
                Line2D([], [], color=colours[0], label=f"1: {comparison.labels[0]}"),
                Line2D([], [], alpha=0, label="... colours follow the table order"),
                Line2D([], [], color=colours[-1], label=f"{len(runs)}: {comparison.labels[-1]}"),
            ]
        handles += [Line2D([], [], color="#555555", linestyle=styles[s], label=s) for s in styles]
        ax.legend(
            handles=handles,
            loc="upper left",
            bbox_to_anchor=(1.02, 1.0),
            fontsize="small",
            frameon=False,
        )
        path = folder / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', metric)}.png"
        # tight: the legend beside the axes grows with the labels
        fig.savefig(path, dpi=DPI, format="png", bbox_inches="tight")
        written.append(path)
    return written


def _style(split: str, splits: list[str]) -> Literal["--", ":", "-"]:
    if split == "train":
        return "--"
    return ":" if split == "test" and "val" in splits else "-"


def _colours(n: int) -> list[Any]:
    """One colour per run: tab10, tab20, then evenly spaced viridis for many runs."""
    import matplotlib

    name = "tab10" if n <= 10 else "tab20" if n <= 20 else "viridis"
    cmap = matplotlib.colormaps[name]
    if n > 20:
        return [cmap(i / max(n - 1, 1)) for i in range(n)]
    return [cmap(i) for i in range(n)]


# listing


def list_runs(folder: Path, statuses: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """One row per run in `folder`, newest first: run, status, started, epochs, duration,
    and the headline: the monitor column (the loss that picked best.pt) and its best value."""
    if not folder.exists():
        raise NncliError(f"{folder} does not exist; train a run first or name its runs folder")
    if not folder.is_dir():
        raise NncliError(f"{folder} is not a folder; name the folder that holds run folders")
    wanted = _statuses(statuses)
    entries = [folder] if is_run(folder) else [p for p in folder.iterdir() if is_run(p)]
    rows: list[tuple[float, str, dict[str, Any]]] = []
    for path in entries:
        try:
            info = json.loads((path / RUN_JSON).read_text(encoding="utf-8"))
            if not isinstance(info, dict):
                raise ValueError("not an object")
        except (OSError, ValueError):
            info = {"status": UNREADABLE}
        status = str(info.get("status", "unknown"))
        if wanted and status not in wanted:
            continue
        # run.json may be edited or damaged by hand: every field is checked before use
        monitor = info.get("monitor")
        monitor = monitor if isinstance(monitor, str) else None
        bests = info.get("best")
        best = bests.get(monitor) if monitor and isinstance(bests, dict) else None
        best = best if isinstance(best, dict) else {}
        final = info.get("final")
        final = final if isinstance(final, dict) else {}
        # run.json keeps a NaN loss as null
        diverged = status != "diverged" and any(
            k.endswith("_loss") and v is None for k, v in final.items()
        )
        row = {
            "run": path.name,
            "status": f"{status} (diverged)" if diverged else status,
            "started": _scalar(info.get("started_at")),
            "epochs": _scalar(info.get("epochs_done")),
            "duration_s": _scalar(info.get("duration_s")),
            "monitor": monitor,
            "best": _scalar(best.get("value")),
            "best epoch": _scalar(best.get("epoch")),
        }
        rows.append((_timestamp(info.get("started_at")), path.name, row))
    rows.sort(key=lambda r: (r[0], r[1]), reverse=True)
    return [r[2] for r in rows]


def _scalar(value: Any) -> Any:
    """A run.json value for a table cell: a plain value as it is, anything else as text."""
    return value if value is None or isinstance(value, str | int | float) else str(value)


def _statuses(statuses: Sequence[str] | None) -> set[str]:
    """`--status failed,interrupted --status running` -> a set, each name checked."""
    wanted = {s.strip() for item in statuses or [] for s in item.split(",") if s.strip()}
    known = (*STATUSES, UNREADABLE)
    unknown = sorted(wanted - set(known))
    if unknown:
        raise NncliError(f"unknown status {', '.join(unknown)}; choose from {', '.join(known)}")
    return wanted


def _timestamp(started: Any) -> float:
    try:
        return datetime.fromisoformat(str(started)).timestamp()
    except ValueError:
        return 0.0  # unknown start: oldest


# small helpers


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:NAMED_IN_WARNING])
    more = len(names) - NAMED_IN_WARNING
    return f"{shown} and {more} more" if more > 0 else shown
