"""A trial forked by the sweep's fork server (warm.py), with subprocess.Popen's methods:
watched through the server, or by its pid once the server has died under it."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import time
from multiprocessing import connection

WATCH_S = 0.05  # how often a trial that lost its fork server is looked at, without pidfd


class Forked:
    """A forked trial, with subprocess.Popen's methods. The fork server that forked it
    reports its end; where that server dies first (the OOM killer, `kill -9`), the trial
    lives on, re-parented, and multiprocessing says exit code 255 (after EOFError reading
    the server's report): from then on the trial is watched by its pid (`lost`), through a
    pidfd on Linux, else by polling, and signalled directly."""

    def __init__(
        self, process: multiprocessing.process.BaseProcess, server: int | None = None
    ) -> None:
        self.process = process
        self.server = server  # the fork server's pid
        self.lost = False  # the server ended while the trial ran: its exit code with it
        self._pidfd: int | None = None  # readable once the lost trial ends (Linux)
        self._ended = False  # the lost trial has ended

    @property
    def pid(self) -> int:
        assert self.process.pid is not None  # started
        return self.process.pid

    @property
    def sentinel(self) -> int | None:
        """A descriptor that becomes ready when the process ends; None where there is
        none to wait on (a lost trial without pidfd: it is polled)."""
        if self.poll() is None and self.lost:
            return self._pidfd
        return self.process.sentinel

    def poll(self) -> int | None:
        if not self.lost:
            code = self.process.exitcode
            if code != 255 or not (_is_trial(self.pid) or server_ended(self.server)):
                return code  # a real exit code (255 too, reported by a living server)
            self._lose()
        if not self._ended:
            if self._pidfd is not None:
                self._ended = bool(connection.wait([self._pidfd], 0))
            else:
                self._ended = not _is_trial(self.pid)
            if self._ended and self._pidfd is not None:
                os.close(self._pidfd)
                self._pidfd = None
        return self.process.exitcode if self._ended else None

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        if self.poll() is None and not self.lost:
            self.process.join(timeout)
        while self.poll() is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired(f"trial {self.pid}", timeout or 0)
            if self._pidfd is not None:
                connection.wait([self._pidfd], left)
            else:
                time.sleep(WATCH_S if left is None else min(WATCH_S, left))
        code = self.poll()
        assert code is not None  # ended
        return code

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def _signal(self, number: int) -> None:
        if self.poll() is not None:
            return
        try:
            if self._pidfd is not None:  # the very process, whatever has its pid since
                signal.pidfd_send_signal(self._pidfd, number)
            else:  # as multiprocessing does, which can no longer where the server ended
                os.kill(self.pid, number)
        except ProcessLookupError:
            pass  # it has just ended

    def _lose(self) -> None:
        """Watch the trial by its pid from now on."""
        self.lost = True
        try:
            self._pidfd = os.pidfd_open(self.pid) if hasattr(os, "pidfd_open") else None
        except ProcessLookupError:
            self._ended = True
        except OSError:  # a kernel without pidfd (before 5.3): polled
            self._pidfd = None
        if self._pidfd is not None and not _is_trial(self.pid):  # it ended before the open
            os.close(self._pidfd)
            self._pidfd, self._ended = None, True


def server_ended(pid: int | None) -> bool:
    """Whether the fork server `pid` (a child of this process) has ended: looked at, not
    reaped (multiprocessing's ensure_running reaps it, and starts another)."""
    if pid is None or not hasattr(os, "waitid"):  # macOS before Python 3.13
        return False
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:  # reaped already: a fresh server has replaced it
        return True


def _is_trial(pid: int) -> bool:
    """Whether `pid` still runs a trial: a live process leading a session of its own, as
    _trial_main makes each (a pid reused since would hardly be one)."""
    try:
        return os.getsid(pid) == pid
    except ProcessLookupError:
        return False
    except PermissionError:  # a system that keeps other sessions' ids to themselves
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
