"""A run folder read back: run.json and metrics.csv for show, resume and `nncli runs`, and
the dotted keys of a config (flatten)."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from nncli.errors import NncliError
from nncli.runs.files import METRICS, RUN_JSON


def is_run(path: Path) -> bool:
    return (path / RUN_JSON).is_file()


def read_info(path: Path) -> dict[str, Any]:
    """run.json of a run folder; NncliError if it is not one or cannot be read."""
    if not path.is_dir():
        raise NncliError(f"{path} is not a folder; name a run folder (e.g. runs/<run>)")
    if not is_run(path):
        raise NncliError(f"{path} is not a run folder: it has no {RUN_JSON}")
    try:
        info: dict[str, Any] = json.loads((path / RUN_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise NncliError(f"{path / RUN_JSON} cannot be read: {exc}") from None
    return info


def read_metrics(path: Path) -> list[dict[str, float]]:
    """The rows of a run's metrics.csv (a half-written last line is skipped)."""
    file = path / METRICS
    if not file.is_file():
        return []
    rows: list[dict[str, float]] = []
    with file.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        for raw in reader:
            try:
                rows.append(
                    {k: float(v) if v not in ("", None) else math.nan for k, v in raw.items()}
                )
            except (TypeError, ValueError):
                break
    return rows


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """`{'optimizer': {'lr': 0.01}}` -> `{'optimizer.lr': 0.01}`: dotted keys as `--set`
    takes them, list items by index (for compare's columns and resume's edited-config check).

    A list of plain values (`betas: [0.9, 0.999]`, `metrics: [accuracy]`) stays one value.
    """
    if isinstance(value, Mapping) and value:
        items: Iterable[tuple[Any, Any]] = value.items()
    elif isinstance(value, list) and any(isinstance(v, dict | list) for v in value):
        items = enumerate(value)
    else:
        return {prefix: value}
    flat: dict[str, Any] = {}
    for key, item in items:
        flat.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    return flat
