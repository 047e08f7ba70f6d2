"""A trained run's own figures: its curves from every row of metrics.csv, and per task a
confusion matrix, decision boundary, scores per label or predictions, from the model
evaluated afresh on its first held-out split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

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
                for s, (xs, ys) in p.splits.items()
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
    return written
