"""Rows for `nncli list KIND`: every registered name, its aliases, parameters and summary."""

from __future__ import annotations

from typing import Any

from nncli.data import datasets
from nncli.layers import layers
from nncli.losses import losses
from nncli.metrics import metrics
from nncli.optim import optimizers
from nncli.registry import Registry

SUMMARY_CHARS = 160  # a longer summary is shortened after a whole word


def _short(summary: str) -> str:
    """`summary`, or as many of its words as fit in SUMMARY_CHARS, then `...`."""
    if len(summary) <= SUMMARY_CHARS:
        return summary
    return summary[: SUMMARY_CHARS - 3].rsplit(" ", 1)[0].rstrip(",;:") + "..."


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
        row["summary"] = _short(entry.summary)
        rows.append(row)
    return rows


def catalogue(kind: str) -> list[dict[str, Any]]:
    if kind == "layers":
        return _entries(layers, lambda e: "activation" if e.info.activation else "layer")
    if kind == "losses":
        return _entries(losses, lambda e: f"{e.info.target} targets, {e.info.output} in")
    if kind == "optimizers":
        return _entries(optimizers)
    if kind == "datasets":
        return _entries(datasets)
    return [
        {
            "name": e.name,
            "task": e.info.task,
            "better": "higher" if e.info.better == "max" else "lower",
            "summary": _short(e.summary),
        }
        for e in metrics.in_order()
    ]
