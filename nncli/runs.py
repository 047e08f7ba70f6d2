"""Run folders: created unique and never overwritten, written as training goes, read back.

```
runs/2026-11-25T10-54-26_circles_3f9c/
  config.yaml  spec.yaml  run.json  metrics.csv  log.txt  checkpoints/  plots/
```
run.json is replaced atomically; a metrics.csv row is flushed when its epoch ends.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from nncli.errors import NncliError

CONFIG = "config.yaml"
SPEC = "spec.yaml"
RUN_JSON = "run.json"
METRICS = "metrics.csv"
LOG = "log.txt"
CHECKPOINTS = "checkpoints"
PLOTS = "plots"
LAST = "last.pt"
BEST = "best.pt"
PREPROCESSING = "preprocessing.json"

LOCK = "run.lock"

STATUSES = ("running", "completed", "failed", "interrupted", "diverged")
LOWER_IS_BETTER = ("loss", "mae", "rmse")
NOT_METRICS = ("epoch", "lr", "time_s")


def now() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


def direction(column: str) -> str:
    """'min' or 'max': which way a metrics.csv column improves (`val_loss` -> min)."""
    metric = column.split("_", 1)[-1]
    return "min" if metric in LOWER_IS_BETTER else "max"


def columns(splits: list[str], metrics: list[str]) -> list[str]:
    """The stable header of metrics.csv."""
    per_split = [f"{s}_{m}" for s in splits for m in ("loss", *metrics)]
    return ["epoch", *per_split, "lr", "time_s"]


def write_atomic(path: Path, text: str) -> None:
    """Write a file so that a reader (or a crash) sees the old or the new text, never half."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _json(value: Any) -> Any:
    """NaN and infinity as null: run.json stays strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    return value


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
        try:
            runs_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise NncliError(f"cannot create the runs folder {runs_dir}: {exc.strerror}") from None
        stamp = datetime.now().strftime("%Y-%m-%dT%H-%M-%S")
        for _ in range(100):
            path = runs_dir / f"{stamp}_{name}_{secrets.token_hex(2)}"
            try:
                path.mkdir()
                break
            except FileExistsError:
                continue
            except OSError as exc:
                raise NncliError(
                    f"cannot create a run folder in {runs_dir}: {exc.strerror}"
                ) from None
        else:  # pragma: no cover - 100 collisions of a random suffix
            raise NncliError(f"could not find a free run folder name in {runs_dir}")
        (path / CHECKPOINTS).mkdir()
        (path / PLOTS).mkdir()
        (path / SPEC).write_text(spec_text, encoding="utf-8")
        (path / CONFIG).write_text(config_text, encoding="utf-8")
        run = cls(path, {"name": name, "status": "running", "started_at": now(), **info})
        run.write_info()
        return run

    @classmethod
    def open(cls, path: Path) -> Run:
        """An existing run folder, to be continued by this process."""
        return cls(path, read_info(path))

    def write_info(self, **updates: Any) -> None:
        self.info.update(updates)
        write_atomic(self.path / RUN_JSON, json.dumps(_json(self.info), indent=2) + "\n")

    def log(self, text: str) -> None:
        """Append lines to log.txt (what the console showed)."""
        with (self.path / LOG).open("a", encoding="utf-8") as f:
            f.write(text if text.endswith("\n") else text + "\n")

    def start_metrics(self, header: list[str], keep_epochs: int = 0) -> None:
        """Open metrics.csv for appending rows, keeping only the complete rows of the first
        `keep_epochs` epochs (a resumed run drops a half-written line and any epoch after
        its checkpoint, so no epoch appears twice)."""
        kept = []
        if keep_epochs > 0:
            with (self.path / METRICS).open(encoding="utf-8", newline="") as f:
                lines = list(csv.reader(f))
            if lines and lines[0] != header:
                raise NncliError(f"{self.path / METRICS} has other columns than this run logs")
            kept = [r for r in lines[1:] if len(r) == len(header) and _epoch(r) <= keep_epochs]
            if [_epoch(r) for r in kept] != list(range(1, keep_epochs + 1)):
                raise NncliError(
                    f"{self.path / METRICS} lacks rows for epochs 1 to {keep_epochs}; "
                    "it cannot be continued"
                )
        text = io.StringIO()
        csv.writer(text).writerows([header, *kept])
        write_atomic(self.path / METRICS, text.getvalue())
        self._columns = header
        self._metrics = (self.path / METRICS).open("a", encoding="utf-8", newline="")
        self._writer = csv.writer(self._metrics)

    def log_epoch(self, row: Mapping[str, float]) -> None:
        """Append one epoch's row (flushed) and update the final and best values."""
        assert self._metrics is not None, "start_metrics first"
        self._writer.writerow([row.get(c, "") for c in self._columns])
        self._metrics.flush()
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
            self._metrics.close()
            self._metrics = None
        ended = datetime.now(timezone.utc).astimezone()
        started = datetime.fromisoformat(self.info["started_at"])
        self.write_info(
            status=status,
            ended_at=ended.isoformat(timespec="seconds"),
            duration_s=round((ended - started).total_seconds(), 3),
            **updates,
        )


def _epoch(row: list[str]) -> float:
    try:
        return float(row[0])
    except (ValueError, IndexError):
        return math.inf


def remove_temporaries(path: Path) -> None:
    """Delete temporary files a killed writer left behind (`.name.PID.tmp`)."""
    for folder in (path, path / CHECKPOINTS):
        for tmp in folder.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold the run folder for this process: a second trainer of the same run is refused.

    The lock file names its process; a lock whose process is gone is stale and taken over.
    """
    lock = path / LOCK
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            pid = _lock_owner(lock)
            if pid is not None and _alive(pid):
                raise NncliError(
                    f"{path} is in use by process {pid} (a train or resume of it is running); "
                    "wait for it to end, or stop it first"
                ) from None
            lock.unlink(missing_ok=True)  # stale: its process is gone
    else:  # pragma: no cover - another process took the stale lock between our two tries
        raise NncliError(f"{path} is in use by another process")
    with os.fdopen(fd, "w") as f:
        f.write(f"{os.getpid()}\n")
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def _lock_owner(lock: Path) -> int | None:
    try:
        return int(lock.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # our own earlier lock (e.g. a crash inside this process)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_locked(path: Path) -> bool:
    """Whether a live process holds the run (so a 'running' status is true)."""
    pid = _lock_owner(path / LOCK)
    return pid is not None and _alive(pid)


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
