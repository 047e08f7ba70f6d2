"""The files of a run folder: their names, and writing them whole (atomic, synced replace;
a clear WriteError for a full disk or read-only folder; strict JSON)."""

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
REPORT = "report.html"  # the run's page for people (nncli/report/)
LOGGERS = "loggers.json"  # where the optional loggers log it (nncli/loggers/links.py)
RESERVE = ".reserve"  # space set aside while a run trains, for its last run.json
RESERVE_BYTES = 32 * 1024  # run.json is a few kB (a file system rounds up to its blocks)


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
# what else a write may meet: named in the message, never taken for a full disk
_OTHER_FIXES = {
    errno.ENOENT: "its folder does not exist",
    errno.EISDIR: "it is a folder",
    errno.ENOTDIR: "a part of its path is a file, not a folder",
}


def write_failed(path: Path, exc: BaseException) -> WriteError:
    """The WriteError for `exc` (an OSError, or torch.save's RuntimeError) writing `path`."""
    code = exc.errno if isinstance(exc, OSError) else None
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else first_line(exc)
    fix = {**_WRITE_FIXES, **_OTHER_FIXES}.get(
        code or 0, "is the disk full or the folder not writable?"
    )
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
    """`text` as UTF-8 through write_bytes_atomic."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write a file so that a reader, a crash or a power cut finds the old bytes or the new
    ones, never half or none: a temporary file beside it, synced, renamed over it, and the
    folder synced. WriteError naming `path` if it cannot be written (the old file is then
    kept as it was, and the temporary removed). Every writer of nncli's files comes here."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())  # the bytes are on disk before the name points at them
        replace_synced(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)  # a half-written temporary only takes space
        raise write_failed(path, exc) from None


def replace_synced(tmp: Path, path: Path) -> None:
    """Rename the written and synced `tmp` over `path`, then sync the folder so that the
    rename itself survives a power cut (OSError as the system reports it)."""
    tmp.replace(path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # a file system that cannot sync folders (some FUSE)
            raise
    finally:
        os.close(folder)


def make_folder(folder: Path) -> Path:
    """`folder` and its parents, made where missing; WriteError naming it otherwise."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_failed(folder, exc) from None
    return folder


def reserve_space(folder: Path) -> None:
    """Set aside RESERVE_BYTES in `folder` so that a run whose disk fills up while it trains
    can still record how it ended: release_space frees them just before that last write.
    WriteError (and nothing kept) where the disk is already too full for them."""
    reserve = folder / RESERVE
    try:
        with reserve.open("wb") as f:
            f.write(os.urandom(RESERVE_BYTES))  # not zeros: a compressing file system keeps those
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        release_space(folder)
        raise write_failed(reserve, exc) from None


def release_space(folder: Path) -> None:
    """Free the space reserve_space set aside in `folder` (nothing where there is none)."""
    with contextlib.suppress(OSError):
        (folder / RESERVE).unlink(missing_ok=True)


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
