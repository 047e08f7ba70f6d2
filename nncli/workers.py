"""How nncli starts its worker processes (a streamed run's DataLoader workers, the
processes that decode or check a folder of images), and how they take signals. They are
started by fork on Linux, the default there for a process of its own up to Python 3.13. A sweep's warm trial is started by a fork
server, and multiprocessing makes that the trial's default too: each data loader worker
then started afresh from the server and unpickled the split, 2.6-4 s a start, two starts
an epoch (an epoch of 0.2 s took 6 s). Elsewhere (macOS, Windows), the platform's
default."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
from multiprocessing.context import BaseContext


def context() -> BaseContext:
    """The multiprocessing context worker processes are started from."""
    if sys.platform == "linux":
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context()


def leave_signals(worker: int | None = None) -> None:
    """A worker's start (a DataLoader's worker_init_fn, a pool's initializer): Ctrl-C and
    SIGTERM reach the terminal's or the job's whole process group, and are left to the main
    process, which stops its workers; SIGTERM from it ends a worker quietly. A worker
    forked with training's handler raised in each, printed its traceback, and (a pool's)
    then waited for work for ever while the main process waited for it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _quietly)


def _quietly(signum: int, frame: object) -> None:
    os._exit(0)  # as torch's own workers end on SIGTERM
