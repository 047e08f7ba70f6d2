"""A trained run's own figures: its curves from every row of metrics.csv; per task a
confusion matrix, decision boundary, scores per label or predictions, from the model
evaluated afresh on its first held-out split; and where they apply, the data before
training (2-D inputs), the misclassified images and a conv net's first filters."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from nncli.engine.batches import figure_splits
from nncli.engine.devices import intra_op_threads, threads_for
from nncli.engine.fit import FitResult
from nncli.engine.inference import evaluate, predict, predict_classes
from nncli.engine.prepare import Prepared
from nncli.figures.curves import plot_curves
from nncli.figures.predictions import (
    plot_confusion_matrix,
    plot_decision_boundary,
    plot_fit,
    plot_label_scores,
    plot_predictions,
)
from nncli.figures.samples import plot_data, plot_filters, plot_misclassified


def write_plots(folder: Path, p: Prepared, result: FitResult) -> list[Path]:
    """The run's figures: curves, and per task a confusion matrix, decision boundary, scores
    per label or predicted-vs-true plot on the first held-out split (train where none is
    held out)."""
    # the model runs on a whole split and a 300x300 grid: with fit's thread count (for
    # circles on a busy 2-core machine, the grid took 0.4 s on 2 threads, 5 ms on 1)
    with intra_op_threads(threads_for(p)):
        return _write_plots(folder, p, result)


def _write_plots(folder: Path, p: Prepared, result: FitResult) -> list[Path]:
    name = p.spec.name or "run"
    written = plot_curves(result.rows, p.metrics, folder, name)
    split = next((s for s in ("test", "val") if s in p.splits), "train")
    x, y = p.splits[split]
    meter = result.meters[split]
    # evaluated afresh: the train meter holds in-flight counts, and under torch.distributed
    # each meter holds only this rank's share
    with torch.no_grad():
        p.model.eval()
        evaluate(p.model, p.loss_fn, x, y, meter, len(x))
    splits = figure_splits(p.splits)  # streamed splits: a bounded sample of their rows
    x, y = splits[split]
    x_host, y_host = x.cpu().numpy(), y.cpu().numpy()
    title = f"{name} ({split})"
    if p.task.kind in ("binary", "multiclass"):
        names = p.task.class_names or [str(c) for c in range(len(meter.confusion()))]
        written.append(
            plot_confusion_matrix(
                np.array(meter.confusion()), names, folder / "confusion_matrix.png", title
            )
        )
        if x_host.shape[1:] == (2,):
            labels = y_host.reshape(len(y_host)).astype(np.int64)
            written.append(
                plot_decision_boundary(
                    lambda grid: predict_classes(p, grid),
                    x_host,
                    labels,
                    names,
                    folder / "decision_boundary.png",
                    title,
                )
            )
    elif p.task.kind == "multilabel":
        names = p.task.class_names or []  # (the figure numbers nameless labels from 1)
        written.append(
            plot_label_scores(meter.label_scores(), names, folder / "label_scores.png", title)
        )
    elif p.task.kind == "regression":
        written.append(
            plot_predictions(y_host, predict(p, x_host), folder / "predictions.png", title)
        )
        if x_host.shape[1:] == (1,) and p.task.n_outputs == 1:  # one input: draw the curve
            # in the data's own units: the scaling of the model's input (input = raw * gain
            # + offset) undone for the points, and applied to the grid the model is run on
            pre = p.dataset.preprocessing
            assert pre is not None  # data.prepare fits it
            (gain,), (offset,) = pre.affine()
            points = {
                s: ((xs.cpu().numpy() - offset) / gain, ys.cpu().numpy())
                for s, (xs, ys) in splits.items()
            }
            written.append(
                plot_fit(
                    points,
                    lambda grid: predict(p, grid * gain + offset),
                    folder / "fit.png",
                    name,
                    (pre.columns[0], pre.targets[0]),
                )
            )
    return written + _lesson_plots(folder, p, splits, split, name)


def _raw(p: Prepared, x: np.ndarray) -> np.ndarray:
    """Model inputs (N, *shape) back in the data's own units (the run's scaling undone),
    or as they are where the scaling is not one per input value."""
    pre = p.dataset.preprocessing
    if pre is None:
        return x
    gain, offset = (np.asarray(v, dtype=np.float64) for v in pre.affine())
    if gain.size != math.prod(x.shape[1:]):
        return x
    shape = (1, *x.shape[1:])
    return (x - offset.reshape(shape)) / gain.reshape(shape)


def _lesson_plots(
    folder: Path,
    p: Prepared,
    splits: dict[str, tuple[torch.Tensor, torch.Tensor]],
    split: str,
    name: str,
) -> list[Path]:
    """data.png for 2-D inputs, misclassified.png for images, filters.png for conv nets."""
    written: list[Path] = []
    classes = p.task.kind in ("binary", "multiclass")
    x, y = splits[split]
    names = p.task.class_names or [str(c) for c in range(max(2, p.task.n_outputs))]
    if x.shape[1:] == (2,) and (
        classes or (p.task.kind == "regression" and y.shape[1:] in ((), (1,)))
    ):
        pre = p.dataset.preprocessing
        axes = (pre.columns[0], pre.columns[1]) if pre and len(pre.columns) == 2 else ("x1", "x2")
        points = {
            s: (_raw(p, xs.cpu().numpy()), ys.cpu().numpy()) for s, (xs, ys) in splits.items()
        }
        written.append(
            plot_data(points, folder / "data.png", name, axes, names if classes else None)
        )
    if classes and x.dim() in (3, 4):  # (N, H, W) or (N, C, H, W) images
        x_host = x.cpu().numpy()
        written.append(
            plot_misclassified(
                _raw(p, x_host),
                y.cpu().numpy(),
                predict_classes(p, x_host),
                names,
                folder / "misclassified.png",
                f"{name} ({split})",
            )
        )
    conv = next((m for m in p.model.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d))), None)
    if conv is not None:
        weight = conv.weight.detach().float().cpu().numpy()
        written.append(plot_filters(weight, folder / "filters.png", name))
    return written
