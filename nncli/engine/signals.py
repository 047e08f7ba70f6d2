"""Ctrl-C and SIGTERM: during training, the handler that stops a run as interrupted and a
block that holds them while an epoch's row and checkpoints are written; in a sweep, a block
that records them for the sweep to act on."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

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
        code = _held.pop("pending", 0)  # where the block failed, its error goes on instead
    if code:
        raise RunInterrupted(code)


_held: dict[str, int] = {"active": 0}


@contextmanager
def training_signals() -> Iterator[None]:
    """During the block, `interrupt` handles this process's Ctrl-C and SIGTERM; after it,
    the handlers before it again, and what it received forgotten."""
    _training[0], _received[0] = os.getpid(), 0
    _held.pop("pending", None)
    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _received[0] = 0
        _held.pop("pending", None)  # held by a block that a second signal or an error left


def raise_received() -> None:
    """Raise the Ctrl-C or SIGTERM that training received once more (fit calls this at each
    batch and after evaluating, evaluate at each chunk): where `interrupt` raised it, the
    code it landed in may have swallowed it, such as a __del__ (Python prints what one
    raises, and goes on), as a DataLoader iterator's that ends its workers."""
    if _received[0]:
        raise RunInterrupted(_received[0])


_training = [0]  # the process whose run `interrupt` stops
_received = [0]  # the exit code of the signal it received, 0 for none yet


def interrupt(signum: int, frame: object) -> None:
    """Signal handler for training: Ctrl-C or SIGTERM stop the run as `interrupted`. A
    process forked from the run's (a data worker, in the moment before it sets its own
    handlers) leaves them to the run's process, which stops it."""
    if os.getpid() != _training[0]:
        return
    code = EXIT_TERMINATED if signum == signal.SIGTERM else EXIT_INTERRUPTED
    _received[0] = _received[0] or code
    if _held["active"]:
        _held["pending"] = code
        return
    raise RunInterrupted(code)


@contextmanager
def recorded_signals() -> Iterator[list[int]]:
    """Record Ctrl-C and SIGTERM instead of raising, for the block: a sweep stops its trials
    and writes sweep.json before it ends, and one stopped while it imports or plans ends
    saying so, not with a traceback from wherever the signal landed. Nested, the block
    shares the outer one's list."""
    if _recording:
        yield _recording[-1]
        return
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def note(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    previous = {s: signal.signal(s, note) for s in (signal.SIGINT, signal.SIGTERM)}
    _recording.append(received)
    try:
        yield received
    finally:
        _recording.pop()
        for s, handler in previous.items():
            signal.signal(s, handler)


_recording: list[list[int]] = []  # the lists of the blocks now recording (one at most)


def exit_code(received: list[int]) -> int:
    """The exit code for the first recorded signal: 143 for SIGTERM, 130 for Ctrl-C."""
    return EXIT_TERMINATED if received[0] == signal.SIGTERM else EXIT_INTERRUPTED
