"""A run's learning curves: one figure per metric, a line per split, the best held-out
epoch marked."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from nncli.figures.style import OTHER_COLOUR, SPLIT_COLOURS, SPLIT_LABELS, SPLITS, figure, save
from nncli.metrics import direction

CURVE_FIGSIZE: tuple[float, float] = (6.4, 4.0)


def _as_float(value: object) -> float:
    """A metrics.csv cell as a float; missing or empty cells become NaN."""
    if not isinstance(value, (int, float, str)):
        return math.nan
    try:
        return float(value)
    except ValueError:  # "" or other non-numeric text
        return math.nan


def plot_curves(
    rows: Sequence[Mapping[str, float]], metrics: Sequence[str], out_dir: Path, title: str
) -> list[Path]:
    """Write ``out_dir/loss.png`` and ``out_dir/<metric>.png`` for each metric; return the paths.

    Each figure has one line per split (train, val, test) whose ``<split>_<name>`` column
    exists; train is dashed, held-out splits are solid with their best epoch marked. A
    metric with no split column falls back to a bare ``<name>`` column (e.g. ``lr``) and
    is skipped when that is missing too.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    columns: set[str] = set()
    for row in rows:
        columns.update(row.keys())
    if "epoch" in columns:
        epochs = np.array([_as_float(row.get("epoch")) for row in rows], dtype=float)
    else:
        epochs = np.arange(1, len(rows) + 1, dtype=float)

    names = ["loss", *(m for m in dict.fromkeys(metrics) if m != "loss")]
    from matplotlib.ticker import MaxNLocator

    written: list[Path] = []
    for name in names:
        series = [(s, f"{s}_{name}") for s in SPLITS if f"{s}_{name}" in columns]
        if not series and name in columns:
            series = [("", name)]
        if not series:
            continue
        lower = direction(name.lower()) == "min"
        with figure(CURVE_FIGSIZE) as (fig, ax):
            for split, column in series:
                values = np.array([_as_float(row.get(column)) for row in rows], dtype=float)
                colour = SPLIT_COLOURS.get(split, OTHER_COLOUR)
                ax.plot(
                    epochs,
                    values,
                    color=colour,
                    linestyle="--" if split == "train" else "-",
                    linewidth=1.8,
                    marker="o",
                    markersize=4,
                    label=SPLIT_LABELS.get(split, name),
                )
                finite = np.isfinite(values) & np.isfinite(epochs)
                if split in ("val", "test") and finite.any():
                    masked = np.where(finite, values, np.inf if lower else -np.inf)
                    best = int(np.argmin(masked) if lower else np.argmax(masked))
                    ax.plot(
                        [epochs[best]],
                        [values[best]],
                        linestyle="none",
                        marker="o",
                        markersize=9,
                        markerfacecolor=colour,
                        markeredgecolor="black",
                        zorder=5,
                        label=(
                            f"best {SPLIT_LABELS[split]}: {values[best]:.4g} "
                            f"(epoch {epochs[best]:g})"
                        ),
                    )
            ax.set_title(f"{title}: {name}")
            ax.set_xlabel("epoch")
            ax.set_ylabel(name)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            known = epochs[np.isfinite(epochs)]
            if known.size and known.max() - known.min() < 2:  # one or two epochs: pad the axis
                ax.set_xlim(known.min() - 1, known.max() + 1)
            ax.grid(True, alpha=0.3)
            ax.legend(loc="best", fontsize="small")
            written.append(save(fig, out_dir / f"{name}.png"))
    return written
