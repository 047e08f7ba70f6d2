"""The files of a run folder: their names, and writing them whole (atomic replace, a clear
WriteError for a full disk or read-only folder, strict JSON)."""

from __future__ import annotations

import contextlib
import errno
import math
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

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


def now() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


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


def remove_temporaries(path: Path) -> None:
    """Delete temporary files a killed writer left behind (`.name.PID.tmp`)."""
    for folder in (path, path / CHECKPOINTS):
        for tmp in folder.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
