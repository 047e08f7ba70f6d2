"""compare's overlay figures: one per metric, a line per run and split."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from nncli.runs.folder import metric_name

if TYPE_CHECKING:
    from nncli.runs.compare import Comparison

LEGEND_RUNS = 12  # more run entries than this make a legend taller than the figure
SMOOTH_RUNS = 50  # antialiased lines up to this many runs


def plot_overlays(comparison: Comparison, folder: Path) -> list[Path]:
    """`<metric>.png`: one line per run and split, a colour per run, train dashed, val solid,
    test solid (dotted when there is a val split too)."""
    # Figure without pyplot: no global state, and pyplot's import alone costs ~0.1 s
    import numpy as np
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    from nncli.figures.curves import CURVE_FIGSIZE
    from nncli.figures.style import save

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
        save(fig, path, tight_box=True)
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
