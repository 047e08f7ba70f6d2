"""Where streamed tables' cache files live ($NNCLI_CACHE/tables) and their hygiene: one
builder at a time (the others wait, then reuse its file), temporary files of builders that
died removed, and a source file's older caches removed once a new one is built, unless a
running process still reads them."""

from __future__ import annotations

import fcntl
import hashlib
import os
from pathlib import Path

from nncli.runs.lock import process_alive

# cache files this process reads, each held open with a shared flock for the process's
# life: an older cache is removed only where no process holds it
HELD: dict[str, int] = {}


def cache_folder() -> Path:
    """Where encoded tables are kept: $NNCLI_CACHE, else $XDG_CACHE_HOME/nncli, else
    ~/.cache/nncli."""
    if os.environ.get("NNCLI_CACHE"):
        return Path(os.environ["NNCLI_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "nncli"
    return Path.home() / ".cache" / "nncli"


def source_prefix(train_file: Path) -> str:
    """The start of the names of every cache of this file (its stem and resolved path)."""
    where = hashlib.sha256(str(train_file.resolve()).encode()).hexdigest()[:8]
    return f"{train_file.stem}-{where}-"


def hold(target: Path) -> None:
    """Mark the cache file `target` as read by this process (until it ends)."""
    if str(target) in HELD:
        return
    try:
        fd = os.open(target, os.O_RDONLY)
        fcntl.flock(fd, fcntl.LOCK_SH)
    except OSError:
        return  # reading it will say what is wrong
    HELD[str(target)] = fd


def tidy(folder: Path, target: Path, prefix: str) -> None:
    """Remove what builders that died left (`.NAME.PID.NS.tmp`, the pid no longer running)
    and the caches of the same source file other than `target` that no process reads;
    called under the builders' lock, so no live builder is writing."""
    for path in folder.glob(".*.tmp"):
        parts = path.name.rsplit(".", 3)
        if len(parts) == 4 and parts[1].isdigit() and not process_alive(int(parts[1])):
            path.unlink(missing_ok=True)
    for path in folder.glob(f"{prefix}*.npy"):
        if path != target and not _in_use(path):
            path.unlink(missing_ok=True)


def _in_use(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def release() -> None:
    """Let go of every cache file this process holds (as its end would; a test playing
    several processes in one calls it between them)."""
    for fd in HELD.values():
        os.close(fd)
    HELD.clear()
