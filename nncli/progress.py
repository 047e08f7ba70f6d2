"""Progress of long work before training starts (decoding a folder of images, checking
their headers, reading and encoding a streamed table): a bar on the terminal that `shown`
names (the CLI's stderr), once the work has taken SHOW_AFTER_S, gone when it ends. Nothing
is shown elsewhere: not in a pipe, a CI log or a sweep trial's log, not with --quiet, not
by a torchrun rank other than 0, not where rich's console is not interactive (TERM=dumb;
TTY_INTERACTIVE=0, for a log that FORCE_COLOR makes look like a terminal)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

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


@contextmanager
def measured(what: str, total: int | None, unit: str = "") -> Iterator[Callable[[int], None]]:
    """A bar for work of `total` units (None: not known ahead; the bar then pulses beside
    the count), advanced by calling what this gives with the units just done:
    `what  ━━━━━  2,048/10,000 unit  0:00:02`. The bar may start at any call short of
    `total`: without one, call it only while work remains (tablechunks.chunks)."""
    console = _console[0]
    if console is None or console.quiet or not console.is_interactive:
        yield lambda done: None
        return
    bar = _Bar(console, what, total, unit)
    try:
        yield bar.advance
    finally:
        bar.stop()


class _Bar:
    """A rich Progress with one task, started once the work has taken SHOW_AFTER_S."""

    def __init__(self, console: Console, what: str, total: int | None, unit: str) -> None:
        self.console, self.what, self.total, self.unit = console, what, total, unit
        self.began = self.updated = time.monotonic()
        self.done = 0
        self.progress: Progress | None = None

    def advance(self, done: int) -> None:
        # the clock every call (60 ns, against 20 us and more to decode or check an image):
        # a folder of large photos, 0.1-0.3 s each, shows its bar a second in too
        self.done += done
        now = time.monotonic()
        if self.progress is not None:
            if now - self.updated >= UPDATE_S:
                self.progress.update(self.progress.task_ids[0], completed=self.done)
                self.updated = now
        elif now - self.began >= SHOW_AFTER_S and (self.total is None or self.done < self.total):
            self._start()  # (work just finished shows none)
            self.updated = now

    def _start(self) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        counts = "{task.completed:,.0f}" + ("" if self.total is None else "/{task.total:,.0f}")
        self.progress = Progress(
            TextColumn("{task.description}", markup=False),  # a file's name, as it is
            BarColumn(),
            TextColumn(f"{counts} {self.unit}".rstrip(), style="progress.download"),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self.progress.start()
        self.progress.add_task(self.what, total=self.total, completed=self.done)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
