"""The lock of a run folder: one training process holds it; a stale lock is taken over."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nncli.errors import NncliError
from nncli.runs.files import write_failed

LOCK = "run.lock"
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
        owner, owner_flocks = _read_lock(lock)
        if owner is not None and not owner_flocks and _alive(owner):
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


def is_locked(path: Path) -> bool:
    """Whether a live process holds the run (so a 'running' status is true)."""
    lock = path / LOCK
    pid, owner_flocks = _read_lock(lock)
    if pid is None or not _alive(pid):
        return False
    if not owner_flocks:
        return True
    # the pid lives, but is it still the owner, or a new process that reused the number?
    return flocked(lock, shared=True)


def flocked(path: Path, shared: bool = False) -> bool:
    """Whether another process holds a flock on `path` that would refuse this one: any
    flock (or, with `shared`, an exclusive one). A file that cannot be opened: False."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # closing drops the probe's flock too
    return False


def abandoned(path: Path) -> bool:
    """Whether run.lock names a process that no longer holds it: the run's trainer was
    killed (SIGKILL, power loss) and never wrote its last status."""
    return _lock_owner(path / LOCK) is not None and not is_locked(path)


@contextmanager
def waited(lock: Path) -> Iterator[None]:
    """Hold the file `lock`, waiting while another process holds it (one builder of a cache
    at a time: data/tablecache). The file is left in place: removing it could let a waiter
    lock a file no one else would see; the kernel drops the flock when its holder dies."""
    try:
        fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o644)
    except OSError as exc:
        raise write_failed(lock, exc) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
