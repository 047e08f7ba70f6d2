"""How nncli starts its worker processes (a streamed run's DataLoader workers, the
processes that decode or check a folder of images): by fork on Linux, the default there
for a process of its own up to Python 3.13. A sweep's warm trial is started by a fork
server, and multiprocessing makes that the trial's default too: each data loader worker
then started afresh from the server and unpickled the split, 2.6-4 s a start, two starts
an epoch (an epoch of 0.2 s took 6 s). Elsewhere (macOS, Windows), the platform's
default."""

from __future__ import annotations

import multiprocessing
import sys
from multiprocessing.context import BaseContext


def context() -> BaseContext:
    """The multiprocessing context worker processes are started from."""
    if sys.platform == "linux":
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context()
