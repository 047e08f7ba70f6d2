"""Metric accumulators that stay on the device until the epoch ends.

A Meter adds up loss and confusion counts (classification) or error sums (regression)
batch by batch in device tensors; `totals()` of every meter are read in one host sync.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from nncli.engine.task import Task


class Meter:
    """Accumulates one split's loss and metrics over an epoch."""

    def __init__(self, task: Task, metrics: list[str], device: torch.device) -> None:
        self.task, self.metrics = task, metrics
        dtype = torch.float32 if device.type == "mps" else torch.float64
        self.kind = task.kind
        if self.kind in ("binary", "multiclass"):
            size = 4 if self.kind == "binary" else task.n_outputs**2
        elif self.kind == "multilabel":
            size = 4 * task.n_outputs
        else:  # regression: per output, sum |e|, sum e^2, sum y, sum y^2
            size = 4 * task.n_outputs
        self._counts = torch.zeros(size, dtype=dtype, device=device)
        self._loss = torch.zeros(1, dtype=dtype, device=device)  # sum of loss * n
        self._n = 0  # samples seen: a host number, so counting them costs no device op
        self._ones: dict[int, torch.Tensor] = {}  # index_add_ sources, by batch length

    def reset(self) -> None:
        self._counts.zero_()
        self._loss.zero_()
        self._n = 0

    def predict(self, out: torch.Tensor) -> torch.Tensor:
        """Class indices (binary, multiclass) or 0/1 labels (multilabel) of model outputs."""
        if self.kind == "multiclass":
            return out.argmax(dim=1)
        return (out > self.task.threshold).long().reshape(out.shape[0], -1).squeeze(1)

    def update(self, out: torch.Tensor, target: torch.Tensor, loss: torch.Tensor, n: int) -> None:
        """Add one batch (`loss` is the batch mean); nothing here waits for the device."""
        self._loss.add_(loss, alpha=n)
        self._n += n
        if self.kind == "regression":
            err = (out - target).reshape(n, -1)
            y = target.reshape(n, -1)
            sums = torch.stack([err.abs().sum(0), (err * err).sum(0), y.sum(0), (y * y).sum(0)], 1)
            self._counts += sums.reshape(-1).to(self._counts.dtype)
            return
        # each sample's confusion cell (true * classes + predicted), counted with index_add_:
        # fewer small ops than bincount, and on CUDA no host sync (bincount reads the max)
        if self.kind == "multiclass":
            cells = target.reshape(-1) * self.task.n_outputs + out.argmax(dim=1)
        elif self.kind == "binary":
            truth = target.reshape(-1).long()
            cells = truth * 2 + (out.reshape(-1) > self.task.threshold)
        else:  # multilabel: 4 cells per label
            labels = torch.arange(target.shape[1], device=target.device)
            cells = (labels * 4 + target.long() * 2 + self.predict(out)).reshape(-1)
        ones = self._ones.get(len(cells))
        if ones is None:
            ones = self._ones[len(cells)] = self._counts.new_ones(len(cells))
        self._counts.index_add_(0, cells, ones)

    def totals(self) -> torch.Tensor:
        """[loss * n, n, counts...] in one device tensor (no host sync)."""
        n = torch.full((1,), self._n, dtype=self._loss.dtype, device=self._loss.device)
        return torch.cat([self._loss, n, self._counts])

    def results(self, values: list[float]) -> dict[str, float]:
        """`{loss: ..., metric: ...}` from this meter's slice of the epoch's totals."""
        loss_sum, n = values[0], values[1]
        counts = values[2:]
        out = {"loss": loss_sum / n if n else math.nan}
        if self.kind == "regression":
            out.update(_regression(counts, int(n), self.task.n_outputs))
        elif self.kind == "multilabel":
            out.update(_multilabel(counts, self.task.n_outputs))
        else:
            classes = 2 if self.kind == "binary" else self.task.n_outputs
            out.update(from_confusion(confusion(counts, classes)))
        return {k: v for k, v in out.items() if k == "loss" or k in self.metrics}

    def label_scores(self) -> list[dict[str, float]]:
        """A multilabel split's scores per label (see `label_scores`); reads the device."""
        return label_scores(self._counts.tolist(), self.task.n_outputs)

    def confusion(self) -> list[list[int]]:
        """This split's confusion matrix (rows true, columns predicted); reads the device."""
        classes = 2 if self.kind == "binary" else self.task.n_outputs
        return confusion(self._counts.tolist(), classes)


def confusion(counts: list[float], classes: int) -> list[list[int]]:
    return [[int(counts[t * classes + p]) for p in range(classes)] for t in range(classes)]


def _ratio(a: float, b: float) -> float:
    return a / b if b else 0.0


def from_confusion(cm: list[list[int]]) -> dict[str, float]:
    """Accuracy and macro precision, recall, F1 (a class never predicted scores 0)."""
    classes = len(cm)
    total = sum(map(sum, cm))
    tp = [cm[c][c] for c in range(classes)]
    predicted = [sum(cm[t][c] for t in range(classes)) for c in range(classes)]
    actual = [sum(cm[c]) for c in range(classes)]
    precision = [_ratio(tp[c], predicted[c]) for c in range(classes)]
    recall = [_ratio(tp[c], actual[c]) for c in range(classes)]
    f1 = [_ratio(2 * p * r, p + r) for p, r in zip(precision, recall, strict=True)]
    return {
        "accuracy": _ratio(sum(tp), total),
        "precision": sum(precision) / classes,
        "recall": sum(recall) / classes,
        "f1": sum(f1) / classes,
    }


def _multilabel(counts: list[float], labels: int) -> dict[str, float]:
    cells = sum(counts)
    correct = sum(counts[4 * i] + counts[4 * i + 3] for i in range(labels))
    out = {"accuracy": _ratio(correct, cells)}
    # macro over labels of each label's positive-class precision/recall/f1
    scores = label_scores(counts, labels)
    for name in ("precision", "recall", "f1"):
        out[name] = sum(s[name] for s in scores) / labels
    return out


def label_scores(counts: Sequence[float], labels: int) -> list[dict[str, float]]:
    """Each label's precision, recall, f1 (of its "yes") and support (its true "yes"
    count) from a multilabel meter's counts: tn, fp, fn, tp per label."""
    out = []
    for i in range(labels):
        tn, fp, fn, tp = counts[4 * i : 4 * i + 4]
        p, r = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
        f1 = _ratio(2 * p * r, p + r)
        out.append(
            {"precision": p, "recall": r, "f1": f1, "support": tp + fn, "n": tn + fp + fn + tp}
        )
    return out


def _regression(counts: list[float], n: int, outputs: int) -> dict[str, float]:
    if n == 0:
        return {"mae": math.nan, "rmse": math.nan, "r2": math.nan}
    rows = [counts[4 * j : 4 * j + 4] for j in range(outputs)]
    mae = sum(r[0] for r in rows) / (n * outputs)
    rmse = math.sqrt(sum(r[1] for r in rows) / (n * outputs))
    r2s = []
    for _, sq_sum, y_sum, y2_sum in rows:
        total = y2_sum - y_sum * y_sum / n
        r2s.append(1.0 - sq_sum / total if total > 0 else math.nan)
    return {"mae": mae, "rmse": rmse, "r2": sum(r2s) / outputs}
