"""Rows for `nncli list KIND`: every registered name, its aliases, parameters and summary."""

from __future__ import annotations

from typing import Any

from nncli.config.spec import CLASSIFICATION_METRICS, REGRESSION_METRICS
from nncli.data import datasets
from nncli.layers import ACTIVATIONS, layers
from nncli.losses import losses
from nncli.optim import optimizers
from nncli.registry import Registry

METRIC_NOTES = {
    "accuracy": "share of correct predictions (multilabel: of correct label decisions)",
    "precision": "macro average over classes of TP / (TP + FP)",
    "recall": "macro average over classes of TP / (TP + FN)",
    "f1": "macro average over classes of the harmonic mean of precision and recall",
    "mae": "mean absolute error",
    "rmse": "root mean squared error",
    "r2": "coefficient of determination (1 is perfect; averaged over outputs)",
}


def _entries(registry: Registry[Any], kind_of: Any = None) -> list[dict[str, Any]]:
    rows = []
    for entry in registry:
        params = ", ".join(
            f"{name}={default}" if default != "required" else f"{name} (required)"
            for name, _, default in entry.fields()
        )
        row = {"name": entry.name, "aliases": ", ".join(entry.aliases), "parameters": params}
        if kind_of is not None:
            row["kind"] = kind_of(entry)
        row["summary"] = entry.summary
        rows.append(row)
    return rows


def catalogue(kind: str) -> list[dict[str, Any]]:
    if kind == "layers":
        return _entries(layers, lambda e: "activation" if e.name in ACTIVATIONS else "layer")
    if kind == "losses":
        return _entries(losses, lambda e: f"{e.info.target} targets, {e.info.output} in")
    if kind == "optimizers":
        return _entries(optimizers)
    if kind == "datasets":
        return _entries(datasets)
    return [
        {
            "name": m,
            "task": "classification" if m in CLASSIFICATION_METRICS else "regression",
            "summary": METRIC_NOTES[m],
        }
        for m in (*CLASSIFICATION_METRICS, *REGRESSION_METRICS)
    ]
