"""Progress of long work before training starts (decoding a folder of images, checking
their headers): a bar on the terminal that `shown` names (the CLI's stderr), once the work
has taken SHOW_AFTER_S, gone when it ends. Nothing is shown elsewhere: not in a pipe, a
CI log or a sweep trial's log, not with --quiet, not by a torchrun rank other than 0."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from rich.console import Console

T = TypeVar("T")

SHOW_AFTER_S = 1.0  # shorter work shows no bar (it would only flicker)
UPDATE_S = 0.1  # between two updates of the count (the bar redraws 10 times a second)

_console: list[Console | None] = [None]  # where bars go now (`shown`)


@contextmanager
def shown(console: Console | None) -> Iterator[None]:
    """Show the bars of the work done inside on `console` (None: nowhere)."""
    before = _console[0]
    _console[0] = console
    try:
        yield
    finally:
        _console[0] = before


def counted(items: Sequence[T], what: str) -> Iterator[T]:
    """`items` in turn; where they take longer than SHOW_AFTER_S and the console `shown`
    named is a terminal, a bar: `what  ━━━━━  2,048/10,000  0:00:02`."""
    console = _console[0]
    if console is None or console.quiet or not console.is_terminal:
        yield from items
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskID,
        TextColumn,
        TimeElapsedColumn,
    )

    began = updated = time.monotonic()
    bar: Progress | None = None
    task = TaskID(0)
    try:
        for i, item in enumerate(items):
            # the clock every item (60 ns, against 20 us and more to decode or check one):
            # a folder of large photos, 0.1-0.3 s each, shows its bar a second in too
            now = time.monotonic()
            if bar is not None:
                if now - updated >= UPDATE_S:
                    bar.update(task, completed=i)
                    updated = now
            elif i and now - began >= SHOW_AFTER_S:
                bar = Progress(
                    TextColumn("{task.description}"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TimeElapsedColumn(),
                    console=console,
                    transient=True,
                )
                bar.start()
                task = bar.add_task(what, total=len(items), completed=i)
                updated = now
            yield item
    finally:
        if bar is not None:
            bar.stop()
