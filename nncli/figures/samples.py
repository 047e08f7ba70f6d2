"""Figures of what a lesson looks at beside the scores: the data before training (2-D
inputs), the held-out images the model gets wrong, and a conv net's first filters."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from nncli.figures.predictions import class_colours
from nncli.figures.style import SPLIT_LABELS, SPLITS, figure, save

DATA_FIGSIZE: tuple[float, float] = (6.0, 5.0)
MAX_MISCLASSIFIED = 25  # a 5 x 5 grid
MAX_FILTERS = 64  # an 8 x 8 grid: the first convolution rarely has more
CELL_INCHES = 1.3  # one image of a grid
SPLIT_MARKERS: dict[str, str] = {"train": "o", "val": "s", "test": "^"}


def plot_data(
    points: Mapping[str, tuple[np.ndarray, np.ndarray]],
    out: Path,
    title: str,
    axes_names: tuple[str, str] = ("x1", "x2"),
    class_names: Sequence[str] | None = None,
) -> Path:
    """The data before training: each split's (N, 2) inputs, in the data's own units, one
    marker per split; coloured by class where ``class_names`` is given (targets are class
    indices), else by target value (a colour bar)."""
    if not points:
        raise ValueError("no points to draw")
    order = [*(s for s in SPLITS if s in points), *(s for s in points if s not in SPLITS)]
    xs = {s: np.asarray(points[s][0], dtype=float).reshape(-1, 2) for s in order}
    ys = {s: np.asarray(points[s][1], dtype=float).reshape(len(xs[s]), -1)[:, 0] for s in order}
    n = sum(len(x) for x in xs.values())
    size = 60 if n <= 20 else 22 if n <= 1000 else 8

    with figure(DATA_FIGSIZE) as (fig, ax):
        if class_names is not None:
            top = max([len(class_names), *(int(y.max()) + 1 for y in ys.values() if y.size)])
            names = [class_names[c] if c < len(class_names) else str(c) for c in range(top)]
            colours = class_colours(top)
            for split in order:
                labels = ys[split].astype(np.int64)
                ax.scatter(
                    xs[split][:, 0],
                    xs[split][:, 1],
                    c=[colours[c] for c in labels],
                    marker=SPLIT_MARKERS.get(split, "D"),
                    s=size,
                    edgecolors="white",
                    linewidths=0.4,
                )
            for c in range(top):  # the legend: one entry per class, one per split
                ax.scatter([], [], color=colours[c], marker="o", label=names[c])
        else:
            values = np.concatenate([ys[s] for s in order])
            lo, hi = float(values.min()), float(values.max())
            for split in order:
                image = ax.scatter(
                    xs[split][:, 0],
                    xs[split][:, 1],
                    c=ys[split],
                    cmap="viridis",
                    vmin=lo,
                    vmax=hi,
                    marker=SPLIT_MARKERS.get(split, "D"),
                    s=size,
                    edgecolors="none",
                )
            fig.colorbar(image, ax=ax, label="target")
        for split in order:
            ax.scatter(
                [],
                [],
                color="#7f7f7f",
                marker=SPLIT_MARKERS.get(split, "D"),
                label=f"{SPLIT_LABELS.get(split, split)} ({len(xs[split])})",
            )
        ax.set_xlabel(axes_names[0])
        ax.set_ylabel(axes_names[1])
        ax.set_title(f"{title}: data")
        ax.grid(True, alpha=0.2)
        ax.legend(loc="best", fontsize="small")
        return save(fig, out)


def misclassified(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Indices of the samples whose predicted class is not their true one, in order."""
    t = np.asarray(y_true).astype(np.int64).ravel()
    p = np.asarray(y_pred).astype(np.int64).ravel()
    return np.flatnonzero(t != p)


def _as_image(sample: np.ndarray) -> np.ndarray:
    """An (H, W) or (C, H, W) sample as imshow draws it: (H, W), or (H, W, 3) scaled to
    [0, 1] for three channels; other channel counts show their first channel."""
    if sample.ndim == 2:
        return sample
    if sample.shape[0] == 3:
        rgb = np.moveaxis(sample, 0, -1).astype(float)
        lo, hi = float(rgb.min()), float(rgb.max())
        return (rgb - lo) / (hi - lo) if hi > lo else np.zeros_like(rgb)
    return np.asarray(sample[0])


def _grid(n: int) -> tuple[int, int]:
    cols = max(1, math.ceil(math.sqrt(n)))
    return max(1, math.ceil(n / cols)), cols


def mosaic(images: Sequence[np.ndarray], cols: int, top: int) -> np.ndarray:
    """The (H, W) or (H, W, 3) ``images`` in one array, ``cols`` a row, each below ``top``
    blank (NaN) rows for its title and one blank column beside it: one imshow draws them
    all (a grid of axes costs a second a figure)."""
    h, w = images[0].shape[:2]
    rows = max(1, math.ceil(len(images) / cols))
    out = np.full((rows * (h + top), cols * (w + 1), *images[0].shape[2:]), np.nan)
    for k, image in enumerate(images):
        r, c = divmod(k, cols)
        out[r * (h + top) + top : (r + 1) * (h + top), c * (w + 1) : c * (w + 1) + w] = image
    return out


def _draw_mosaic(
    ax: object, images: Sequence[np.ndarray], titles: Sequence[str], cols: int, **kw: object
) -> None:
    """``images`` as one mosaic on ``ax``, each with its title in the blank rows above it."""
    from matplotlib.axes import Axes

    assert isinstance(ax, Axes)
    h, w = images[0].shape[:2]
    top = max(2, math.ceil(0.45 * h))
    ax.imshow(mosaic(images, cols, top), interpolation="nearest", **kw)  # type: ignore[arg-type]
    for k, text in enumerate(titles):
        r, c = divmod(k, cols)
        ax.text(
            c * (w + 1) + (w - 1) / 2,
            r * (h + top) + top - 1,
            text,
            ha="center",
            va="bottom",
            fontsize="small",
        )
    ax.set_axis_off()


def plot_misclassified(
    images: np.ndarray,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    class_names: Sequence[str],
    out: Path,
    title: str,
) -> Path:
    """Up to MAX_MISCLASSIFIED of the samples ``images`` (N, H, W) or (N, C, H, W) whose
    predicted class differs from the true one, each titled "true -> predicted"."""
    wrong = misclassified(y_true, y_pred)
    shown = wrong[:MAX_MISCLASSIFIED]
    t = np.asarray(y_true).astype(np.int64).ravel()
    p = np.asarray(y_pred).astype(np.int64).ravel()

    def name(c: int) -> str:
        return class_names[c] if 0 <= c < len(class_names) else str(c)

    rows, cols = _grid(len(shown))
    heading = f"{title}: {len(wrong)} of {len(t)} misclassified"
    if len(wrong) > len(shown):
        heading += f" (the first {len(shown)})"
    with figure((max(3.5, cols * CELL_INCHES), rows * CELL_INCHES + 0.6)) as (fig, ax):
        if len(shown) == 0:
            ax.text(0.5, 0.5, "none", ha="center", va="center")
            ax.set_axis_off()
        else:
            _draw_mosaic(
                ax,
                [_as_image(np.asarray(images[i])) for i in shown],
                [f"{name(int(t[i]))} -> {name(int(p[i]))}" for i in shown],
                cols,
                cmap="gray_r",
            )
        ax.set_title(heading, fontsize="medium")
        return save(fig, out)


def plot_filters(weight: np.ndarray, out: Path, title: str) -> Path:
    """A convolution's filters: ``weight`` (out, in, H, W) as one small image per output
    channel (its input channels averaged), or (out, in, K) as one line each; the first
    MAX_FILTERS of them."""
    w = np.asarray(weight, dtype=float)
    if w.ndim not in (3, 4) or len(w) == 0:
        raise ValueError(f"weight must be (out, in, K) or (out, in, H, W), got {w.shape}")
    shown = w[:MAX_FILTERS].mean(axis=1)
    rows, cols = _grid(len(shown))
    limit = float(np.abs(shown).max()) or 1.0  # one scale for all: zero is white
    heading = f"{title}: first convolution's {len(w)} filters"
    if len(w) > len(shown):
        heading += f" (the first {len(shown)})"
    with figure((max(3.5, cols * CELL_INCHES), rows * CELL_INCHES + 0.6)) as (fig, ax):
        if shown.ndim == 3:
            titles = [str(k + 1) for k in range(len(shown))]
            _draw_mosaic(ax, list(shown), titles, cols, cmap="RdBu_r", vmin=-limit, vmax=limit)
        else:  # conv1d: one line each, stacked from the top, the first filter highest
            k = np.arange(shown.shape[1])
            for i, line in enumerate(shown):
                base = -2.5 * limit * i
                ax.axhline(base, color="#7f7f7f", linewidth=0.5)
                ax.plot(k, base + line, color="black", marker=".", label=str(i + 1))
            ax.set_yticks(
                [-2.5 * limit * i for i in range(len(shown))],
                labels=[str(i + 1) for i in range(len(shown))],
            )
            ax.set_xlabel("kernel position")
        ax.set_title(heading, fontsize="medium")
        return save(fig, out)
