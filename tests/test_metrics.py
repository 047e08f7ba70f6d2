"""Every registered metric against scikit-learn's computation of the same score, from the
counts engine/meter.py gathers on the device; each one's task and direction."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn import metrics as sk

from nncli.engine.meter import Meter
from nncli.engine.task import Task
from nncli.metrics import direction, metrics

RNG = np.random.default_rng(0)
CLASSIFICATION = {
    "accuracy": sk.accuracy_score,
    "precision": lambda t, p: sk.precision_score(t, p, average="macro", zero_division=0),
    "recall": lambda t, p: sk.recall_score(t, p, average="macro", zero_division=0),
    "f1": lambda t, p: sk.f1_score(t, p, average="macro", zero_division=0),
}
REGRESSION = {
    "mae": sk.mean_absolute_error,
    "rmse": lambda t, p: float(np.sqrt(sk.mean_squared_error(t, p))),
    "r2": sk.r2_score,
}


def _results(task: Task, names: list[str], out: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    meter = Meter(task, names, torch.device("cpu"))
    for lo in range(0, len(y), 7):  # in batches, as fit adds them
        meter.update(out[lo : lo + 7], y[lo : lo + 7], torch.tensor(0.0), len(y[lo : lo + 7]))
    return meter.results(meter.totals().tolist())


def test_every_metric_is_checked_here() -> None:
    assert {e.name for e in metrics} == {*CLASSIFICATION, *REGRESSION}


@pytest.mark.parametrize("name", sorted(CLASSIFICATION))
@pytest.mark.parametrize("classes", [2, 4])
def test_a_classification_metric_equals_scikit_learns(name: str, classes: int) -> None:
    y = RNG.integers(0, classes, 61)
    logits = RNG.normal(size=(61, classes)) + 1.5 * np.eye(classes)[y]
    if classes == 2:  # binary: one logit, threshold 0
        task = Task("binary", 1, "logits")
        out = torch.tensor(logits[:, 1:2] - logits[:, :1], dtype=torch.float32)
        target = torch.tensor(y[:, None], dtype=torch.float32)
        predicted = (out.numpy().ravel() > 0).astype(int)
    else:
        task = Task("multiclass", classes, "logits")
        out, target = torch.tensor(logits, dtype=torch.float32), torch.tensor(y)
        predicted = logits.argmax(axis=1)
    got = _results(task, [name], out, target)[name]
    assert got == pytest.approx(CLASSIFICATION[name](y, predicted), abs=1e-9)
    assert metrics.get(name).info.task == "classification"
    assert direction(f"val_{name}") == "max"


@pytest.mark.parametrize("name", sorted(REGRESSION))
def test_a_regression_metric_equals_scikit_learns(name: str) -> None:
    y = RNG.normal(size=(53, 2))
    predicted = y + RNG.normal(scale=0.3, size=y.shape)
    task = Task("regression", 2, "values")
    out = torch.tensor(predicted, dtype=torch.float32)
    got = _results(task, [name], out, torch.tensor(y, dtype=torch.float32))[name]
    expected = np.mean([REGRESSION[name](y[:, j], predicted[:, j]) for j in range(2)])
    if name != "r2":  # mae and rmse over every value at once
        expected = REGRESSION[name](y.ravel(), predicted.ravel())
    assert got == pytest.approx(expected, rel=1e-5)
    assert metrics.get(name).info.task == "regression"
    assert direction(f"test_{name}") == ("max" if name == "r2" else "min")
