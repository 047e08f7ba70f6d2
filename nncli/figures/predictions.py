"""Figures of what a run's model predicts on its data: decision boundary, confusion
matrix, scores per label, predicted against true values, and the fit of one input."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nncli.figures.style import OTHER_COLOUR, SPLIT_COLOURS, SPLIT_LABELS, SPLITS, figure, save

BOUNDARY_FIGSIZE: tuple[float, float] = (6.0, 5.0)
PREDICTIONS_FIGSIZE: tuple[float, float] = (5.5, 5.0)
FIT_FIGSIZE: tuple[float, float] = (6.4, 4.5)
GRID_RESOLUTION = 300  # fine enough that a class boundary shows no visible stairs
MODEL_COLOUR = "#000000"


def class_colours(n: int) -> list[tuple[float, ...]]:
    """``n`` distinct colours, tab10 (tab20 beyond ten classes)."""
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return [tuple(cmap(i % cmap.N)) for i in range(n)]


def _labels_from_predict(output: Any, m: int) -> np.ndarray:
    """Class indices from ``predict``'s output: (M,) indices, (M, C) or (M, 1) probabilities."""
    arr = np.asarray(output)
    if arr.ndim == 2 and arr.shape[1] == 1:  # one sigmoid probability per point
        arr = (arr[:, 0] >= 0.5).astype(np.int64)
    elif arr.ndim == 2:
        arr = np.argmax(arr, axis=1)
    if arr.shape != (m,):
        raise ValueError(f"predict returned shape {np.shape(output)}, expected ({m},) or ({m}, C)")
    labels: np.ndarray = np.rint(arr).astype(np.int64)
    return labels


def plot_decision_boundary(
    predict: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    class_names: Sequence[str],
    out: Path,
    title: str,
) -> Path:
    """Predicted class regions over a grid around the 2-D points ``x``, with the points on top.

    ``predict`` is called once with a (M, 2) float32 grid and returns (M,) class indices or
    (M, C) class probabilities. Points are coloured by their true class ``y``.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y).astype(np.int64).ravel()
    if x.ndim != 2 or x.shape[1] != 2 or len(x) == 0:
        raise ValueError(f"x must have shape (N, 2) with N > 0, got {x.shape}")
    if len(y) != len(x):
        raise ValueError(f"y has {len(y)} labels for {len(x)} points")

    lo, hi = x.min(axis=0), x.max(axis=0)
    span = hi - lo
    margin = np.where(span > 0, 0.15 * span, 1.0)
    g1 = np.linspace(lo[0] - margin[0], hi[0] + margin[0], GRID_RESOLUTION)
    g2 = np.linspace(lo[1] - margin[1], hi[1] + margin[1], GRID_RESOLUTION)
    xx, yy = np.meshgrid(g1, g2)
    grid = np.column_stack([xx.ravel(), yy.ravel()]).astype(np.float32)
    zz = _labels_from_predict(predict(grid), len(grid)).reshape(xx.shape)

    n_classes = max(len(class_names), int(y.max()) + 1, int(zz.max()) + 1)
    names = [class_names[i] if i < len(class_names) else str(i) for i in range(n_classes)]
    colours = class_colours(n_classes)

    from matplotlib.colors import ListedColormap

    with figure(BOUNDARY_FIGSIZE) as (fig, ax):
        ax.contourf(
            xx,
            yy,
            zz,
            levels=np.arange(n_classes + 1) - 0.5,
            cmap=ListedColormap(colours),
            alpha=0.25,
        )
        if n_classes > 1:
            ax.contour(
                xx,
                yy,
                zz,
                levels=np.arange(n_classes - 1) + 0.5,
                colors="black",
                linewidths=0.6,
                alpha=0.5,
            )
        # a handful of points (logic gates) must stand out; thousands must not hide the regions
        size = 90 if len(x) <= 20 else 28 if len(x) <= 500 else 12
        for c in range(n_classes):
            mask = y == c
            if mask.any():
                ax.scatter(
                    x[mask, 0],
                    x[mask, 1],
                    color=colours[c],
                    s=size,
                    edgecolors="white",
                    linewidths=0.5,
                    label=names[c],
                )
        ax.set_xlim(g1[0], g1[-1])
        ax.set_ylim(g2[0], g2[-1])
        ax.set_title(f"{title}: decision boundary")
        ax.set_xlabel("x1")
        ax.set_ylabel("x2")
        ax.grid(True, alpha=0.2)
        ax.legend(
            title="true class\n(shading: predicted)",
            loc="best",
            fontsize="small",
            title_fontsize="small",
        )
        return save(fig, out)


def confusion_figsize(n_classes: int) -> tuple[float, float]:
    """Figure size (inches) of a confusion matrix with ``n_classes`` classes."""
    side = max(4.0, 0.6 * n_classes + 2.5)
    return (side + 1.0, side)


def plot_confusion_matrix(
    cm: np.ndarray, class_names: Sequence[str], out: Path, title: str
) -> Path:
    """Confusion matrix heat map (rows true class, columns predicted) with counts in cells."""
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"confusion matrix must be square, got shape {cm.shape}")
    n = cm.shape[0]
    names = [class_names[i] if i < len(class_names) else str(i) for i in range(n)]
    integral = bool(np.all(np.mod(cm, 1) == 0))
    vmax = float(cm.max()) if cm.size else 0.0
    total = float(cm.sum())
    accuracy = f", accuracy {float(np.trace(cm)) / total:.3f}" if total > 0 else ""

    with figure(confusion_figsize(n)) as (fig, ax):
        image = ax.imshow(cm, cmap="Blues", vmin=0, vmax=max(vmax, 1.0))
        fig.colorbar(image, ax=ax, label="count")
        for i in range(n):
            for j in range(n):
                value = cm[i, j]
                ax.text(
                    j,
                    i,
                    f"{int(value)}" if integral else f"{value:.2f}",
                    ha="center",
                    va="center",
                    color="white" if value > vmax / 2 else "black",
                    fontsize="medium" if n <= 10 else "x-small",
                )
        ax.set_xticks(range(n), labels=names)
        ax.set_yticks(range(n), labels=names)
        if n * max((len(s) for s in names), default=0) > 30:  # long labels would overlap
            for label in ax.get_xticklabels():
                label.set(rotation=45, ha="right", rotation_mode="anchor")
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.set_title(f"{title}: confusion matrix{accuracy}")
        return save(fig, out)


LABEL_SCORES: tuple[str, ...] = ("precision", "recall", "f1")
LABEL_SCORE_COLOURS: dict[str, str] = {"precision": "#1f77b4", "recall": "#ff7f0e", "f1": "#2ca02c"}
MAX_LABELS_SHOWN = 40  # beyond this, the labels with the lowest f1 (the ones to look at)


def label_scores_figsize(n_labels: int) -> tuple[float, float]:
    """Figure size (inches) of the per-label scores of ``n_labels`` labels."""
    return (7.4, max(3.0, 0.55 * min(n_labels, MAX_LABELS_SHOWN) + 1.5))


def plot_label_scores(
    scores: Sequence[Mapping[str, float]], label_names: Sequence[str], out: Path, title: str
) -> Path:
    """A multilabel model's precision, recall and f1 for each label (its "yes" answers), one
    group of bars per label; each label's name says how many samples truly carry it. Past
    MAX_LABELS_SHOWN labels, those with the lowest f1 are drawn."""
    if not scores:
        raise ValueError("no labels to plot")
    n = len(scores)
    names = [label_names[i] if i < len(label_names) else f"label{i + 1}" for i in range(n)]
    macro = sum(s["f1"] for s in scores) / n
    shown = list(range(n))
    heading = f"{title}: scores per label, macro f1 {macro:.3f}"
    if n > MAX_LABELS_SHOWN:
        shown = sorted(shown, key=lambda i: (scores[i]["f1"], i))[:MAX_LABELS_SHOWN]
        heading += f"\nthe {MAX_LABELS_SHOWN} of {n} labels with the lowest f1"

    with figure(label_scores_figsize(n)) as (fig, ax):
        height = 0.8 / len(LABEL_SCORES)
        rows = np.arange(len(shown))
        for k, score in enumerate(LABEL_SCORES):
            ax.barh(
                rows + (k - 1) * height,
                [scores[i][score] for i in shown],
                height=height,
                color=LABEL_SCORE_COLOURS[score],
                label=score,
            )
        ax.set_yticks(rows, labels=[f"{names[i]} ({int(scores[i]['support'])} yes)" for i in shown])
        ax.set_ylim(len(shown) - 0.5, -0.5)  # the first label on top, no empty margins
        ax.set_xlim(0.0, 1.0)
        ax.set_xlabel("score of the label's yes answers")
        ax.grid(axis="x", alpha=0.3)
        # beside the axes, at their top: inside, it would hide bars near 1.0
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
        ax.set_title(heading)
        return save(fig, out)


def r2_score(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Coefficient of determination over all elements; NaN when ``y_true`` is constant."""
    t = np.asarray(y_true, dtype=float).ravel()
    p = np.asarray(y_pred, dtype=float).ravel()
    ss_tot = float(np.sum((t - t.mean()) ** 2))
    if ss_tot == 0.0:
        return math.nan
    return 1.0 - float(np.sum((t - p) ** 2)) / ss_tot


def _padded_range(values: np.ndarray) -> tuple[float, float]:
    """The span of the finite ``values`` (0 to 1 where none is), 5% wider at each end, or 1
    where they are all one value."""
    finite = values[np.isfinite(values)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    pad = 0.05 * (hi - lo) if hi > lo else 1.0
    return lo - pad, hi + pad


def plot_predictions(y_true: np.ndarray, y_pred: np.ndarray, out: Path, title: str) -> Path:
    """Regression scatter of predicted against true values with a dashed y = x line and R²."""
    t = np.asarray(y_true, dtype=float).ravel()
    p = np.asarray(y_pred, dtype=float).ravel()
    if t.shape != p.shape or t.size == 0:
        raise ValueError(
            f"y_true and y_pred must be non-empty and equal in size: {t.size}, {p.size}"
        )
    r2 = r2_score(t, p)
    lo, hi = _padded_range(np.concatenate([t, p]))

    with figure(PREDICTIONS_FIGSIZE) as (fig, ax):
        ax.plot([lo, hi], [lo, hi], linestyle="--", color="black", linewidth=1.0, label="y = x")
        ax.scatter(
            t,
            p,
            s=18 if t.size <= 1000 else 6,
            alpha=0.7 if t.size <= 1000 else 0.35,
            color=SPLIT_COLOURS["test"],
            edgecolors="none",
            label=f"predictions (R² = {r2:.3f})",
        )
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_aspect("equal", adjustable="box")
        ax.set_xlabel("true value")
        ax.set_ylabel("predicted value")
        ax.set_title(f"{title}: predicted vs true")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper left", fontsize="small")
        return save(fig, out)


def plot_fit(
    points: Mapping[str, tuple[np.ndarray, np.ndarray]],
    predict: Callable[[np.ndarray], np.ndarray],
    out: Path,
    title: str,
    names: tuple[str, str] = ("x", "y"),
) -> Path:
    """A model of one input feature as the curve it draws, over each split's (x, y) points.

    ``points`` maps a split name to its (N, 1) inputs and (N,) or (N, 1) targets, in the
    data's own units; ``predict`` is called once with a (M, 1) float32 grid of such inputs
    spanning every split's, and does any scaling the model needs. ``names``: the input's
    and the target's, for the axes.
    """
    if not points:
        raise ValueError("no points to draw")
    xs = {s: np.asarray(x, dtype=float).ravel() for s, (x, _) in points.items()}
    ys = {s: np.asarray(y, dtype=float).ravel() for s, (_, y) in points.items()}
    for split in points:
        if xs[split].size != ys[split].size or xs[split].size == 0:
            raise ValueError(f"split {split!r} needs as many targets as inputs, and some")
    lo, hi = _padded_range(np.concatenate(list(xs.values())))
    grid = np.linspace(lo, hi, GRID_RESOLUTION, dtype=np.float32)[:, None]
    curve = np.asarray(predict(grid), dtype=float).reshape(len(grid), -1)[:, 0]

    with figure(FIT_FIGSIZE) as (fig, ax):
        for split in (*(s for s in SPLITS if s in points), *(s for s in points if s not in SPLITS)):
            ax.scatter(
                xs[split],
                ys[split],
                s=18 if xs[split].size <= 1000 else 6,
                alpha=0.75,
                color=SPLIT_COLOURS.get(split, OTHER_COLOUR),
                edgecolors="none",
                label=f"{SPLIT_LABELS.get(split, split)} points",
            )
        ax.plot(grid[:, 0], curve, color=MODEL_COLOUR, linewidth=2.0, label="model")
        ax.set_xlabel(names[0])
        ax.set_ylabel(names[1])
        ax.set_title(f"{title}: fit")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize="small")
        return save(fig, out)
