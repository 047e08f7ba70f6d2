"""Run folders: created unique and never overwritten, written as training goes, read back.

```
runs/2026-11-25T10-54-26_circles_3f9c/
  config.yaml  spec.yaml  run.json  metrics.csv  log.txt  checkpoints/  plots/
```
run.json is replaced atomically; a metrics.csv row is flushed when its epoch ends.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import fcntl
import io
import json
import math
import os
import secrets
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from nncli.errors import NncliError, first_line

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


def metric_name(column: str) -> str:
    """`test_accuracy` -> `accuracy` (metrics.csv columns are `<split>_<metric>`)."""
    return column.split("_", 1)[-1]


def direction(column: str) -> str:
    """'min' or 'max': which way a metrics.csv column improves (`val_loss` -> min)."""
    return "min" if metric_name(column) in LOWER_IS_BETTER else "max"


def columns(splits: list[str], metrics: list[str]) -> list[str]:
    """The stable header of metrics.csv."""
    per_split = [f"{s}_{m}" for s in splits for m in ("loss", *metrics)]
    return ["epoch", *per_split, "lr", "time_s"]


class WriteError(NncliError):
    """A file of a run folder could not be written (disk full, read-only, quota...)."""


_WRITE_FIXES = {
    errno.ENOSPC: "the disk is full; free some space",
    errno.EDQUOT: "the disk quota is used up; free some space",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "the folder is not writable",
    errno.EPERM: "the folder is not writable",
    errno.EFBIG: "the file is larger than this process may write (ulimit -f)",
}


def write_failed(path: Path, exc: BaseException) -> WriteError:
    """The WriteError for `exc` (an OSError, or torch.save's RuntimeError) writing `path`."""
    code = exc.errno if isinstance(exc, OSError) else None
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else first_line(exc)
    fix = _WRITE_FIXES.get(code or 0, "is the disk full or the folder not writable?")
    return WriteError(f"cannot write {path}: {reason} ({fix})")


def as_write_error(exc: BaseException, folder: Path) -> WriteError | None:
    """`exc` as a WriteError if it is one, or an OSError of a full disk, a read-only or
    unwritable folder (e.g. from a plot being saved in `folder`); None otherwise."""
    if isinstance(exc, WriteError):
        return exc
    if isinstance(exc, OSError) and exc.errno in _WRITE_FIXES:
        return write_failed(Path(exc.filename) if exc.filename else folder, exc)
    return None


def write_atomic(path: Path, text: str) -> None:
    """Write a file so that a reader (or a crash) sees the old or the new text, never half;
    WriteError if it cannot be written (the old file is then kept as it was)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)  # a half-written temporary only takes space
        raise write_failed(path, exc) from None


def json_safe(value: Any) -> Any:
    """NaN and infinity as null, so run.json, sweep.json and --format json stay strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
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
        path = new_folder(runs_dir, name)
        try:
            (path / CHECKPOINTS).mkdir()
            (path / PLOTS).mkdir()
            (path / SPEC).write_text(spec_text, encoding="utf-8")
            (path / CONFIG).write_text(config_text, encoding="utf-8")
            run = cls(path, {"name": name, "status": "running", "started_at": now(), **info})
            run.write_info()
        except (OSError, WriteError) as exc:
            # nothing has trained yet: a half-made folder would only pass for a run
            shutil.rmtree(path, ignore_errors=True)
            if isinstance(exc, WriteError):
                raise
            raise write_failed(Path(exc.filename or path), exc) from None
        return run

    @classmethod
    def open(cls, path: Path) -> Run:
        """An existing run folder, to be continued by this process."""
        return cls(path, read_info(path))

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


FLOCK = "flock"  # second word of a lock file whose owner holds flock() on it


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold the run folder for this process: a second trainer of the same run is refused.

    The lock file names its process, which holds an flock() on it while it runs. The kernel
    drops the flock when the process dies however it ends, so a stale file (SIGKILL, power
    loss) is taken over, even when its pid has been reused, and two processes that find
    the same stale file cannot both take it (deleting and re-creating it could).
    """
    lock = path / LOCK
    fd = _acquire(path, lock)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)  # before the flock goes: see the inode check below
        os.close(fd)


def _acquire(path: Path, lock: Path) -> int:
    """A descriptor of `lock` holding its flock, the file naming this process."""
    for _ in range(100):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o644)
        except OSError as exc:
            raise write_failed(lock, exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise _in_use(path, _lock_owner(lock)) from None
        # a finishing owner unlinks the file before its flock goes: ours may be on that
        # removed file, which would leave the next process free to lock a new one
        opened = os.fstat(fd)
        try:
            current = lock.stat()
        except FileNotFoundError:
            current = None
        if current is None or (current.st_ino, current.st_dev) != (opened.st_ino, opened.st_dev):
            os.close(fd)
            continue
        owner, flocked = _read_lock(lock)
        if owner is not None and not flocked and _alive(owner):
            # written without flock (an older nncli): its pid is all there is to go by
            os.close(fd)
            raise _in_use(path, owner)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {FLOCK}\n".encode(), 0)
        return fd
    raise _in_use(path, None)  # pragma: no cover - the file changed hands 100 times


def _in_use(path: Path, pid: int | None) -> NncliError:
    who = f"process {pid}" if pid is not None else "another process"
    return NncliError(
        f"{path} is in use by {who} (a train or resume of it is running); "
        "wait for it to end, or stop it first"
    )


def _read_lock(lock: Path) -> tuple[int | None, bool]:
    """(pid, whether it holds an flock) as the lock file says; (None, False) if unreadable."""
    try:
        words = lock.read_text().split()
        return int(words[0]), words[1:2] == [FLOCK]
    except (OSError, ValueError, IndexError):
        return None, False


def _lock_owner(lock: Path) -> int | None:
    return _read_lock(lock)[0]


def _alive(pid: int) -> bool:
    # our own pid in a lock is an earlier lock of this process (e.g. after a crash in it)
    return pid != os.getpid() and process_alive(pid)


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists (one of another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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


def is_locked(path: Path) -> bool:
    """Whether a live process holds the run (so a 'running' status is true)."""
    lock = path / LOCK
    pid, flocked = _read_lock(lock)
    if pid is None or not _alive(pid):
        return False
    if not flocked:
        return True
    # the pid lives, but is it still the owner, or a new process that reused the number?
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # closing drops the probe's flock too
    return False


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
