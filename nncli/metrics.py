"""Metric entries: each computes one number from an epoch's counts, and says which task it
applies to and whether higher or lower is better. Torch-free (the spec and `nncli list`
import it); engine/meter.py gathers the counts on the device.

A new metric is one function here (or anywhere) registered with `@metrics.register`; the
spec, `nncli list metrics`, the monitor, compare's best values and the figures follow.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from nncli.registry import Registry, UnknownName

Task = Literal["classification", "regression"]


@dataclass(frozen=True)
class MetricInfo:
    task: Task
    better: Literal["max", "min"]
    default: bool = False  # logged when the file names no metrics


@dataclass(frozen=True)
class ClassCounts:
    """A classification split's counts: per class (multilabel: per label, of its "yes")
    true positives, false positives and false negatives; correct decisions of all."""

    per_class: list[tuple[float, float, float]]
    correct: float
    total: float


@dataclass(frozen=True)
class ErrorSums:
    """A regression split's sums per output: |error|, error^2, target, target^2; n samples."""

    n: int
    per_output: list[tuple[float, float, float, float]]


metrics: Registry[Callable[[Any], float]] = Registry("metric", key="name")


def ratio(a: float, b: float) -> float:
    return a / b if b else 0.0


def precision_recall_f1(tp: float, fp: float, fn: float) -> tuple[float, float, float]:
    """One class's scores (a class never predicted scores 0)."""
    p, r = ratio(tp, tp + fp), ratio(tp, tp + fn)
    return p, r, ratio(2 * p * r, p + r)


def _macro(c: ClassCounts, which: int) -> float:
    scores = [precision_recall_f1(*counts)[which] for counts in c.per_class]
    return sum(scores) / len(scores) if scores else 0.0


@metrics.register("accuracy", info=MetricInfo("classification", "max", default=True))
def accuracy(c: ClassCounts) -> float:
    """share of correct predictions (multilabel: of correct label decisions)"""
    return ratio(c.correct, c.total)


@metrics.register("precision", info=MetricInfo("classification", "max"))
def precision(c: ClassCounts) -> float:
    """macro average over classes of TP / (TP + FP)"""
    return _macro(c, 0)


@metrics.register("recall", info=MetricInfo("classification", "max"))
def recall(c: ClassCounts) -> float:
    """macro average over classes of TP / (TP + FN)"""
    return _macro(c, 1)


@metrics.register("f1", info=MetricInfo("classification", "max"))
def f1(c: ClassCounts) -> float:
    """macro average over classes of the harmonic mean of precision and recall"""
    return _macro(c, 2)


@metrics.register("mae", info=MetricInfo("regression", "min", default=True))
def mae(s: ErrorSums) -> float:
    """mean absolute error"""
    if s.n == 0:
        return math.nan
    return sum(r[0] for r in s.per_output) / (s.n * len(s.per_output))


@metrics.register("rmse", info=MetricInfo("regression", "min", default=True))
def rmse(s: ErrorSums) -> float:
    """root mean squared error"""
    if s.n == 0:
        return math.nan
    return math.sqrt(sum(r[1] for r in s.per_output) / (s.n * len(s.per_output)))


@metrics.register("r2", info=MetricInfo("regression", "max", default=True))
def r2(s: ErrorSums) -> float:
    """coefficient of determination (1 is perfect; averaged over outputs)"""
    if s.n == 0:
        return math.nan
    scores = []
    for _, sq_sum, y_sum, y2_sum in s.per_output:
        total = y2_sum - y_sum * y_sum / s.n
        scores.append(1.0 - sq_sum / total if total > 0 else math.nan)
    return sum(scores) / len(scores)


def info(name: str) -> MetricInfo:
    found: MetricInfo = metrics.get(name).info
    return found


def for_task(task: Task) -> list[str]:
    """The registered metrics that apply to a task, in registration order."""
    return [e.name for e in metrics.in_order() if e.info.task == task]


def direction(column: str) -> Literal["max", "min"]:
    """Which way a metrics.csv column (`val_accuracy`, `train_loss`) or a bare metric name
    improves: losses go down, registered metrics say, anything else goes up."""
    split, _, rest = column.partition("_")
    name = rest if split in SPLITS and rest else column
    if name.endswith("loss"):
        return "min"
    entry = metrics.find(name)
    return "max" if entry is None else info(entry.name).better


SPLITS = ("train", "val", "test")


def unknown_metric(column: str) -> UnknownName | None:
    """The error for a split_metric column (`val_acc`) whose metric is not registered."""
    metric = column.partition("_")[2]
    if metric == "loss" or metrics.find(metric) is not None:
        return None
    return UnknownName("metric", metric, ["loss", *metrics.names()])
