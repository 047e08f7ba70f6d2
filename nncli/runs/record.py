"""A run folder read back: run.json and metrics.csv for show, resume and `nncli runs`, and
the dotted keys of a config (flatten)."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from nncli.errors import NncliError, first_line
from nncli.runs.files import METRICS, RUN_JSON


def is_run(path: Path) -> bool:
    return (path / RUN_JSON).is_file()


class UnreadableRun(NncliError):
    """A run folder whose run.json cannot be read or holds what nncli does not write."""

    def __init__(self, folder: Path, what: str) -> None:
        self.what = what  # names the file first: `run.json: holds a list, not an object`
        super().__init__(f"{folder}/{what}")


@dataclass(frozen=True)
class Best:
    """The best value of a metrics.csv column and the first epoch that reached it."""

    value: float
    epoch: int


@dataclass(frozen=True)
class RunInfo:
    """run.json, each field checked; None where it lacks one (an older or interrupted run).

    `data` is the file as read: a writer continues from it (unknown keys kept as they were).
    """

    folder: Path
    data: Mapping[str, Any]
    name: str | None = None
    status: str | None = None  # one of folder.STATUSES when nncli wrote it
    started_at: str | None = None  # ISO 8601, as are ended_at and resumed[].at
    ended_at: str | None = None
    duration_s: float | None = None
    spec_file: str | None = None
    command: Sequence[str] | None = None
    epochs: int | None = None  # to train
    epochs_done: int | None = None
    device: str | None = None
    seed: int | None = None
    n_params: int | None = None
    task: str | None = None
    monitor: str | None = None  # the column that picks best.pt
    samples: Mapping[str, int] | None = None
    input_shape: Sequence[int] | None = None
    output: str | None = None
    class_names: Sequence[str] | None = None
    smoke: bool | None = None
    versions: Mapping[str, str] | None = None
    git_commit: str | None = None
    best: Mapping[str, Best] | None = None  # per metrics.csv column
    final: Mapping[str, float | None] | None = None  # the last row; null for NaN
    best_checkpoint: Mapping[str, float | None] | None = None  # epoch and monitored value
    stopped_early: bool | None = None
    error: str | None = None
    resumed: Sequence[Mapping[str, Any]] | None = None  # {at, after_epoch} per resume


@dataclass(frozen=True)
class _Kind:
    """What a run.json field holds, for checking it and for saying what was expected."""

    what: str
    check: Callable[[Any], bool]


def _aware(value: Any) -> bool:
    """Whether `value` is an ISO 8601 time with its UTC offset (as nncli writes them)."""
    try:
        return datetime.fromisoformat(value).tzinfo is not None
    except (TypeError, ValueError):
        return False


def _list(kind: _Kind) -> _Kind:
    return _Kind(
        f"a list of {kind.what}", lambda v: isinstance(v, list) and all(map(kind.check, v))
    )


def _mapping(kind: _Kind) -> _Kind:
    return _Kind(
        f"an object of {kind.what}",
        lambda v: isinstance(v, dict) and all(kind.check(x) for x in v.values()),
    )


def _record(**kinds: _Kind) -> _Kind:
    return _Kind(
        "{" + ", ".join(kinds) + "}",
        lambda v: isinstance(v, dict) and all(k in v and c.check(v[k]) for k, c in kinds.items()),
    )


_TEXT = _Kind("text", lambda v: isinstance(v, str))
_TIME = _Kind("a time with its UTC offset (ISO 8601)", lambda v: isinstance(v, str) and _aware(v))
_WHOLE = _Kind("whole numbers", lambda v: isinstance(v, int) and not isinstance(v, bool))
_NUMBER = _Kind("numbers", lambda v: isinstance(v, int | float) and not isinstance(v, bool))
_FLAG = _Kind("true or false", lambda v: isinstance(v, bool))
_NUMBER_OR_NULL = _Kind("numbers or null", lambda v: v is None or _NUMBER.check(v))
_FIELDS: dict[str, _Kind] = {
    "name": _TEXT,
    "status": _TEXT,
    "started_at": _TIME,
    "ended_at": _TIME,
    "duration_s": _Kind("a number", _NUMBER.check),
    "spec_file": _TEXT,
    "command": _list(_TEXT),
    "epochs": _Kind("a whole number", _WHOLE.check),
    "epochs_done": _Kind("a whole number", _WHOLE.check),
    "device": _TEXT,
    "seed": _Kind("a whole number", _WHOLE.check),
    "n_params": _Kind("a whole number", _WHOLE.check),
    "task": _TEXT,
    "monitor": _TEXT,
    "samples": _mapping(_WHOLE),
    "input_shape": _list(_WHOLE),
    "output": _TEXT,
    "class_names": _list(_TEXT),
    "smoke": _FLAG,
    "versions": _mapping(_TEXT),
    "git_commit": _TEXT,
    "best": _mapping(_record(value=_NUMBER, epoch=_WHOLE)),
    "final": _mapping(_NUMBER_OR_NULL),
    "best_checkpoint": _mapping(_NUMBER_OR_NULL),
    "stopped_early": _FLAG,
    "error": _TEXT,
    "resumed": _list(_record(at=_TIME, after_epoch=_WHOLE)),
}


def read_run(folder: Path, strict: bool = True) -> RunInfo:
    """run.json of a run folder, the one reader of it. NncliError if `folder` is not a run
    folder; UnreadableRun if run.json is not a JSON object, or (`strict`) if a field holds
    the wrong type. Not strict, such a field reads as missing (for listing and comparing)."""
    if not folder.is_dir():
        raise NncliError(f"{folder} is not a folder; name a run folder (e.g. runs/<run>)")
    if not is_run(folder):
        raise NncliError(f"{folder} is not a run folder: it has no {RUN_JSON}")
    try:
        data = json.loads((folder / RUN_JSON).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UnreadableRun(folder, f"{RUN_JSON}: {first_line(exc)}") from None
    except ValueError as exc:  # UnicodeDecodeError too
        raise UnreadableRun(folder, f"{RUN_JSON}: not JSON ({first_line(exc)})") from None
    if not isinstance(data, dict):
        what = type(data).__name__ if data is not None else "null"
        raise UnreadableRun(folder, f"{RUN_JSON}: holds a {what}, not an object")
    fields: dict[str, Any] = {}
    problems = []
    for key, kind in _FIELDS.items():
        value = data.get(key)
        if value is None:
            continue
        if kind.check(value):
            fields[key] = value
        else:
            problems.append(f"{key} should be {kind.what}, not {_shown(value)}")
    if problems and strict:
        them = "it" if len(problems) == 1 else "them"
        raise UnreadableRun(
            folder, f"{RUN_JSON}: {'; '.join(problems)} (edited by hand? fix or delete {them})"
        )
    if "best" in fields:
        fields["best"] = {k: Best(v["value"], v["epoch"]) for k, v in fields["best"].items()}
    return RunInfo(folder, data, **fields)


def _shown(value: Any) -> str:
    """A JSON value as a message quotes it, cut short."""
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def read_metrics(path: Path) -> list[dict[str, float]]:
    """The rows of a run's metrics.csv (a half-written last line is skipped); UnreadableRun
    where the file is missing or is not UTF-8 text."""
    file = path / METRICS
    if not file.is_file():
        raise UnreadableRun(path, f"{METRICS}: missing (each epoch's row is kept there)")
    try:
        data = file.read_bytes()
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        bad = data[exc.start : exc.start + 1].hex()
        raise UnreadableRun(
            path, f"{METRICS}: not UTF-8 text (byte 0x{bad} on line {line})"
        ) from None
    except OSError as exc:
        raise UnreadableRun(path, f"{METRICS}: {first_line(exc)}") from None
    rows: list[dict[str, float]] = []
    for raw in csv.DictReader(io.StringIO(text, newline="")):
        try:
            rows.append({k: float(v) if v not in ("", None) else math.nan for k, v in raw.items()})
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
