"""Run folders: created unique and never overwritten, written as training goes; the columns
of metrics.csv and which way each improves.

```
runs/2026-11-25T10-54-26_circles_3f9c/
  config.yaml  spec.yaml  run.json  metrics.csv  log.txt  checkpoints/  plots/
```
run.json is replaced atomically; a metrics.csv row is flushed when its epoch ends.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import io
import json
import math
import secrets
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from nncli.errors import NncliError
from nncli.metrics import direction
from nncli.runs.files import (
    CHECKPOINTS,
    CONFIG,
    LAST,
    LOG,
    METRICS,
    PLOTS,
    RUN_JSON,
    SPEC,
    WriteError,
    json_safe,
    now,
    release_space,
    reserve_space,
    write_atomic,
    write_failed,
)
from nncli.runs.record import RunInfo

STATUSES = ("running", "completed", "failed", "interrupted", "diverged", "pruned")
NOT_METRICS = ("epoch", "lr", "time_s")


def metric_name(column: str) -> str:
    """`test_accuracy` -> `accuracy` (metrics.csv columns are `<split>_<metric>`)."""
    return column.split("_", 1)[-1]


def columns(splits: list[str], metrics: list[str]) -> list[str]:
    """The stable header of metrics.csv."""
    per_split = [f"{s}_{m}" for s in splits for m in ("loss", *metrics)]
    return ["epoch", *per_split, "lr", "time_s"]


@dataclass
class Run:
    """A run folder being written by the training process that owns it."""

    path: Path
    info: dict[str, Any]
    _metrics: TextIO | None = None
    _writer: Any = None
    _columns: list[str] = field(default_factory=list)

    @classmethod
    def create(
        cls, runs_dir: Path, name: str, spec_text: str, config_text: str, info: dict[str, Any]
    ) -> Run:
        """A new, uniquely named folder under `runs_dir` holding the spec and run.json."""
        path = new_folder(runs_dir, name)
        try:
            (path / CHECKPOINTS).mkdir()
            (path / PLOTS).mkdir()
            (path / SPEC).write_text(spec_text, encoding="utf-8")
            (path / CONFIG).write_text(config_text, encoding="utf-8")
            run = cls(path, {"name": name, "status": "running", "started_at": now(), **info})
            run.write_info()
            reserve_space(path)  # so that finish can record the status on a full disk
        except (OSError, WriteError) as exc:
            # nothing has trained yet: a half-made folder would only pass for a run
            shutil.rmtree(path, ignore_errors=True)
            if isinstance(exc, WriteError):
                raise
            raise write_failed(Path(exc.filename or path), exc) from None
        return run

    @classmethod
    def open(cls, info: RunInfo) -> Run:
        """An existing run folder, to be continued by this process from its run.json as read
        (and checked: a file that could not be read is never rewritten)."""
        return cls(info.folder, copy.deepcopy(dict(info.data)))

    def write_info(self, **updates: Any) -> None:
        self.info.update(updates)
        write_atomic(self.path / RUN_JSON, json.dumps(json_safe(self.info), indent=2) + "\n")

    def log(self, text: str) -> None:
        """Append lines to log.txt (what the console showed)."""
        try:
            with (self.path / LOG).open("a", encoding="utf-8") as f:
                f.write(text if text.endswith("\n") else text + "\n")
        except OSError as exc:
            raise write_failed(self.path / LOG, exc) from None

    def start_metrics(self, header: list[str], keep_epochs: int = 0) -> None:
        """Open metrics.csv for appending rows, keeping only the complete rows of the first
        `keep_epochs` epochs (a resumed run drops a half-written line and any epoch after
        its checkpoint, so no epoch appears twice)."""
        kept = kept_rows(self.path, header, keep_epochs) if keep_epochs > 0 else []
        text = io.StringIO()
        csv.writer(text).writerows([header, *kept])
        write_atomic(self.path / METRICS, text.getvalue())
        self._columns = header
        try:
            self._metrics = (self.path / METRICS).open("a", encoding="utf-8", newline="")
        except OSError as exc:
            raise write_failed(self.path / METRICS, exc) from None
        self._writer = csv.writer(self._metrics)

    def log_epoch(self, row: Mapping[str, float]) -> None:
        """Append one epoch's row (flushed) and update the final and best values."""
        assert self._metrics is not None, "start_metrics first"
        try:
            self._writer.writerow([row.get(c, "") for c in self._columns])
            self._metrics.flush()
        except OSError as exc:
            raise write_failed(self.path / METRICS, exc) from None
        best = self.info.setdefault("best", {})
        for col in self._columns:
            if col in NOT_METRICS or col not in row or not math.isfinite(row[col]):
                continue
            old = best.get(col)
            better = old is None or (
                row[col] < old["value"] if direction(col) == "min" else row[col] > old["value"]
            )
            if better:
                best[col] = {"value": row[col], "epoch": int(row["epoch"])}
        self.write_info(epochs_done=int(row["epoch"]), final=dict(row))

    def checkpoint_path(self, name: str) -> Path:
        return self.path / CHECKPOINTS / name

    def finish(self, status: str, **updates: Any) -> None:
        if self._metrics is not None:
            # on a full disk the unflushed row fails again here; the status matters more
            with contextlib.suppress(OSError):
                self._metrics.close()
            self._metrics = None
        release_space(self.path)  # room for this last run.json where the disk is full
        ended = datetime.now(timezone.utc).astimezone()
        started = self.info.get("started_at")  # missing only where run.json was edited
        duration = (ended - datetime.fromisoformat(started)).total_seconds() if started else None
        self.write_info(
            status=status,
            ended_at=ended.isoformat(timespec="seconds"),
            duration_s=round(duration, 3) if duration is not None else None,
            **updates,
        )


def kept_rows(folder: Path, header: list[str], epochs: int) -> list[list[str]]:
    """The complete rows of epochs 1 to `epochs` in `folder`'s metrics.csv, which a run
    resumed after that epoch keeps; NncliError where the file has other columns than
    `header` or lacks one of those rows (so resume can refuse before it writes)."""
    file = folder / METRICS
    try:
        with file.open(encoding="utf-8", newline="") as f:
            lines = list(csv.reader(f))
    except (OSError, UnicodeDecodeError) as exc:
        raise NncliError(f"{file} cannot be read: {exc}") from None
    if lines and lines[0] != header:
        theirs = ", ".join(lines[0])
        raise NncliError(
            f"{file} has other columns ({theirs}) than this run logs ({', '.join(header)}); "
            "it cannot be continued"
        )
    kept = [r for r in lines[1:] if len(r) == len(header) and _epoch(r) <= epochs]
    if [_epoch(r) for r in kept] != list(range(1, epochs + 1)):
        last = folder / CHECKPOINTS / LAST
        raise NncliError(
            f"{file} lacks rows for epochs 1 to {epochs} of {last}; it cannot be continued"
        )
    return kept


def _epoch(row: list[str]) -> float:
    try:
        return float(row[0])
    except (ValueError, IndexError):
        return math.inf


def new_or_empty(out: Path) -> Path:
    """`out` made, where it does not exist or is an empty folder (an --out the user named);
    NncliError otherwise, so nothing of theirs is mixed with or overwritten."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise NncliError(f"{out} already exists and is not empty; choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NncliError(f"cannot create {out}: {exc.strerror}") from None
    return out


def new_folder(parent: Path, label: str | None = None) -> Path:
    """A new folder `parent/<timestamp>[_label]_<random>`, never one that exists already
    (two processes starting in the same second get different suffixes)."""
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NncliError(f"cannot create the folder {parent}: {exc.strerror}") from None
    stamp = datetime.now().strftime("%Y-%m-%dT%H-%M-%S")
    middle = f"_{label}" if label else ""
    for _ in range(100):
        path = parent / f"{stamp}{middle}_{secrets.token_hex(2)}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
        except OSError as exc:
            raise NncliError(f"cannot create a folder in {parent}: {exc.strerror}") from None
    raise NncliError(f"could not find a free folder name in {parent}")  # pragma: no cover
