"""Ctrl-C and SIGTERM during training: the handler that stops a run as interrupted, and a
block that holds them while an epoch's row and checkpoints are written."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

from nncli.errors import EXIT_INTERRUPTED, EXIT_TERMINATED, RunInterrupted


@contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM (as `interrupt` sees them) until the block ends.

    A signal mask would not do: the OS may hand the signal to one of torch's threads.
    """
    _held["active"] = True
    try:
        yield
    finally:
        _held["active"] = False
    code = _held.pop("pending", 0)
    if code:
        raise RunInterrupted(code)


_held: dict[str, int] = {"active": 0}


def interrupt(signum: int, frame: object) -> None:
    """Signal handler for training: Ctrl-C or SIGTERM stop the run as `interrupted`."""
    code = EXIT_TERMINATED if signum == signal.SIGTERM else EXIT_INTERRUPTED
    if _held["active"]:
        _held["pending"] = code
        return
    raise RunInterrupted(code)
