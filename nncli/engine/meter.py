"""Metric accumulators that stay on the device until the epoch ends.

A Meter adds up loss and confusion counts (classification) or error sums (regression)
batch by batch in device tensors; `totals()` of every meter are read in one host sync.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from nncli.engine.task import Task
from nncli.metrics import ClassCounts, ErrorSums, metrics, precision_recall_f1


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
        """`{loss: ..., metric: ...}` from this meter's slice of the epoch's totals; each
        metric is its registry entry applied to the counts."""
        loss_sum, n = values[0], values[1]
        out = {"loss": loss_sum / n if n else math.nan}
        stats = self.stats(values[2:], int(n))
        for name in self.metrics:
            out[name] = metrics.get(name).build(stats)
        return out

    def stats(self, counts: list[float], n: int) -> ClassCounts | ErrorSums:
        """What the metrics are computed from: per-class counts, or per-output error sums."""
        outputs = self.task.n_outputs
        if self.kind == "regression":
            rows = [counts[4 * j : 4 * j + 4] for j in range(outputs)]
            return ErrorSums(n, [(r[0], r[1], r[2], r[3]) for r in rows])
        if self.kind == "multilabel":  # tn, fp, fn, tp of each label
            cells = [counts[4 * i : 4 * i + 4] for i in range(outputs)]
            return ClassCounts(
                [(tp, fp, fn) for _, fp, fn, tp in cells],
                correct=sum(tn + tp for tn, _, _, tp in cells),
                total=sum(counts),
            )
        cm = confusion(counts, 2 if self.kind == "binary" else outputs)
        tp = [cm[c][c] for c in range(len(cm))]
        predicted = [sum(row[c] for row in cm) for c in range(len(cm))]
        return ClassCounts(
            [(tp[c], predicted[c] - tp[c], sum(cm[c]) - tp[c]) for c in range(len(cm))],
            correct=sum(tp),
            total=sum(map(sum, cm)),
        )

    def label_scores(self) -> list[dict[str, float]]:
        """A multilabel split's scores per label (see `label_scores`); reads the device."""
        return label_scores(self._counts.tolist(), self.task.n_outputs)

    def confusion(self) -> list[list[int]]:
        """This split's confusion matrix (rows true, columns predicted); reads the device."""
        classes = 2 if self.kind == "binary" else self.task.n_outputs
        return confusion(self._counts.tolist(), classes)


def confusion(counts: list[float], classes: int) -> list[list[int]]:
    return [[int(counts[t * classes + p]) for p in range(classes)] for t in range(classes)]


def label_scores(counts: Sequence[float], labels: int) -> list[dict[str, float]]:
    """Each label's precision, recall, f1 (of its "yes") and support (its true "yes"
    count) from a multilabel meter's counts: tn, fp, fn, tp per label."""
    out = []
    for i in range(labels):
        tn, fp, fn, tp = counts[4 * i : 4 * i + 4]
        p, r, f1 = precision_recall_f1(tp, fp, fn)
        out.append(
            {"precision": p, "recall": r, "f1": f1, "support": tp + fn, "n": tn + fp + fn + tp}
        )
    return out
