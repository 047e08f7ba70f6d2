"""Where streamed tables' cache files live ($NNCLI_CACHE/tables), how their rows are named
(as the rows of the user's files: `TableRows`), and their hygiene: one
builder at a time (the others wait, then reuse its file), temporary files of builders that
died removed, and a source file's older caches removed once a new one is built, unless a
running process still reads them."""

from __future__ import annotations

import fcntl
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from nncli.data.npy import NpyRows
from nncli.data.preprocess import numbered
from nncli.runs.lock import flocked, process_alive

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

# cache files this process reads, each held open with a shared flock for the process's
# life: an older cache is removed only where no process holds it
HELD: dict[str, int] = {}


@dataclass(frozen=True)
class TableRows(NpyRows):
    """A streamed table's rows in its cache file, named in messages as the rows of the
    user's files they were encoded from: a CSV's lines (its header is line 1), a Parquet
    file's rows (from 1), as the in-memory path names them."""

    parts: tuple[tuple[int, str], ...] = ()  # (its first row in the cache, "KEY: FILE")
    first: int = 2  # the number of a file's first row
    word: str = "line"

    @property
    def what(self) -> str:  # type: ignore[override]
        return self.parts[0][1]

    def named(self, rows: NDArray[np.int64]) -> tuple[str, str]:
        """The file of the first of `rows` and its rows among them, as that file's lines."""
        import numpy as np

        starts = np.array([start for start, _ in self.parts])
        part = int(np.searchsorted(starts, rows[0], side="right")) - 1
        start, what = self.parts[part]
        end = self.parts[part + 1][0] if part + 1 < len(self.parts) else np.iinfo(np.int64).max
        mine = rows[(rows >= start) & (rows < end)]
        return what, numbered(mine - start + self.first, self.word)


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
        if path != target and not flocked(path):  # no reader holds it
            path.unlink(missing_ok=True)


def release() -> None:
    """Let go of every cache file this process holds (as its end would; a test playing
    several processes in one calls it between them)."""
    for fd in HELD.values():
        os.close(fd)
    HELD.clear()
