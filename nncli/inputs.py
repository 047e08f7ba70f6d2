"""The user's input files (experiment files, data files, a run's preprocessing.json): only
regular files are opened and every read is bounded, so a device such as `/dev/zero`, a pipe
or a socket is refused instead of read for ever; and the memory a read needs is checked
against what the machine has before it is allocated."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from nncli.errors import NncliError, first_line

if TYPE_CHECKING:
    import pandas as pd

Kind = Literal["missing", "folder", "special", "unreadable", "large"]


class FileProblem(NncliError):
    """An input file that cannot be read as one; `kind` says why, `reason` in words."""

    def __init__(self, what: str, kind: Kind, reason: str) -> None:
        self.kind, self.reason = kind, reason
        super().__init__(f"{what} {reason}")


SPECIAL = "is not a regular file (a device, a pipe or a socket); name a file"


def _check(mode: int, what: str) -> None:
    if stat.S_ISDIR(mode):
        raise FileProblem(what, "folder", "is a folder, not a file")
    if not stat.S_ISREG(mode):
        raise FileProblem(what, "special", SPECIAL)


def regular_size(path: str | Path, what: str) -> int:
    """The size of `path`, which must be a regular file (checked without opening it);
    FileProblem otherwise, its message starting with `what` (e.g. `data.path: FILE`)."""
    try:
        info = os.stat(path)  # noqa: PTH116 (a string path too: no Path made per image)
    except FileNotFoundError:
        raise FileProblem(what, "missing", "does not exist") from None
    except OSError as exc:
        raise FileProblem(what, "unreadable", f"cannot be read: {exc.strerror}") from None
    except (UnicodeEncodeError, ValueError):  # a lone surrogate or a NUL in the name
        raise FileProblem(what, "missing", "does not exist") from None
    _check(info.st_mode, what)
    return info.st_size


def read_bytes(path: Path, what: str, limit: int) -> bytes:
    """The bytes of the regular file `path`, at most `limit` of them (FileProblem beyond)."""
    try:
        # non-blocking: opening a FIFO that no one writes to would otherwise wait for ever
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise FileProblem(what, "missing", "does not exist") from None
    except IsADirectoryError:
        raise FileProblem(what, "folder", "is a folder, not a file") from None
    except OSError as exc:
        raise FileProblem(what, "unreadable", f"cannot be read: {exc.strerror}") from None
    try:
        _check(os.fstat(fd).st_mode, what)
        with os.fdopen(fd, "rb", closefd=False) as f:
            raw = f.read(limit + 1)
    except OSError as exc:
        raise FileProblem(what, "unreadable", f"cannot be read: {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(raw) > limit:
        raise FileProblem(what, "large", f"is larger than {limit} bytes")
    return raw


def available_memory() -> int | None:
    """Bytes of memory this machine can still give (Linux's MemAvailable, or less where this
    process's memory cgroup has a limit), or None where the system does not say."""
    free = None
    try:
        with Path("/proc/meminfo").open(encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    free = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    limited = cgroup_free(Path("/sys/fs/cgroup"), Path("/proc/self/cgroup"))
    if free is not None or limited is not None:
        return min(n for n in (free, limited) if n is not None)
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def cgroup_free(root: Path, membership: Path) -> int | None:
    """What the memory cgroup of this process (as `membership` lists it) still allows: its
    limit less what it uses, its reclaimable file cache counted as free (cgroup v2's
    memory.max, or v1's memory.limit_in_bytes); None without a limit."""
    try:
        lines = membership.read_text(encoding="ascii").splitlines()
        for line in lines:
            _, controllers, path = line.split(":", 2)
            v2 = controllers == ""
            if not v2 and "memory" not in controllers.split(","):
                continue
            folder = (root if v2 else root / "memory") / path.lstrip("/")
            names = (
                ("memory.max", "memory.current")
                if v2
                else ("memory.limit_in_bytes", "memory.usage_in_bytes")
            )
            if not (folder / names[0]).is_file():
                continue
            limit = (folder / names[0]).read_text(encoding="ascii").strip()
            if limit == "max" or int(limit) >= 2**60:
                continue
            used = int((folder / names[1]).read_text(encoding="ascii"))
            stat = dict(
                ln.split()
                for ln in (folder / "memory.stat").read_text(encoding="ascii").splitlines()
            )
            cache = int(stat.get("inactive_file" if v2 else "total_inactive_file", 0))
            return max(0, int(limit) - used + cache)
    except (OSError, ValueError):
        return None
    return None


def size_text(n_bytes: float) -> str:
    """`1.6 TB`: a byte count for a message."""
    for unit in ("bytes", "kB", "MB", "GB", "TB", "PB"):
        if n_bytes < 1000 or unit == "PB":
            return f"{n_bytes:,.0f} {unit}" if unit == "bytes" else f"{n_bytes:,.1f} {unit}"
        n_bytes /= 1000
    raise AssertionError  # pragma: no cover - the loop returns


def check_memory(what: str, n_bytes: float, fix: str) -> None:
    """Refuse, before allocating, to make `what` of `n_bytes` where the machine has less
    memory available (NncliError naming both sizes and `fix`)."""
    free = available_memory()
    if free is not None and n_bytes > free:
        raise NncliError(
            f"{what} needs about {size_text(n_bytes)} of memory, more than the "
            f"{size_text(free)} this machine has available; {fix}"
        )


CSV_SAMPLE_BYTES = 2**20  # a CSV larger than this has its size in memory estimated first


def _check_csv_memory(path: Path, size: int, key: str) -> None:
    """Refuse, before reading it, a CSV whose table would not fit in memory: its size is
    estimated from its first rows (what pandas holds of them, plus their float32 copy)."""
    import io

    import pandas as pd

    try:
        with path.open("rb") as f:
            head = f.read(CSV_SAMPLE_BYTES)
        head = head[: head.rfind(b"\n") + 1]
        sample = pd.read_csv(io.BytesIO(head), low_memory=False)
    except (OSError, ValueError, pd.errors.ParserError):
        return  # the whole read reports what is wrong with the file
    if len(sample) == 0:
        return
    per_row = (sample.memory_usage(deep=True).sum() + sample.size * 4) / len(sample)
    rows = len(sample) * size / len(head)
    check_memory(
        f"{key}: {path} ({size_text(size)}, about {rows:,.0f} rows)",
        per_row * rows,
        "use a smaller file, or fewer columns",
    )


@contextmanager
def csv_errors(path: Path, key: str) -> Iterator[None]:
    """pandas' errors reading the CSV `path` (whole or in chunks: data/tablestream) as one
    NncliError naming the file and the key it came from."""
    import pandas as pd

    try:
        yield
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise NncliError(f"{key}: {path} cannot be read as CSV: {first_line(exc)}") from None
    except OSError as exc:
        raise NncliError(f"{key}: {path} cannot be read: {exc.strerror}") from None


def read_csv(path: Path, key: str) -> pd.DataFrame:
    """A CSV file with a header line; NncliError naming the file and the key it came from."""
    import pandas as pd

    size = regular_size(path, f"{key}: {path}")  # not a folder, a device or a pipe
    if size > CSV_SAMPLE_BYTES:
        _check_csv_memory(path, size, key)
    with csv_errors(path, key):
        frame = pd.read_csv(path, low_memory=False)  # no mixed-type chunk warnings
    if len(frame) == 0:
        raise NncliError(f"{key}: {path} has a header but no rows")
    return frame
