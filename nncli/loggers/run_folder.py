"""The run folder as a logger: each epoch's row to metrics.csv, its checkpoints to
last.pt and best.pt, and how the run ended to run.json."""

from __future__ import annotations

import queue
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from nncli.engine.signals import deferred_signals
from nncli.engine.state import saved_bytes
from nncli.loggers.base import Checkpoint, Logger
from nncli.runs.files import BEST, LAST, write_bytes_atomic
from nncli.runs.folder import Run

if TYPE_CHECKING:
    from nncli.engine.fit import FitResult
    from nncli.engine.prepare import Prepared


class RunFolderLogger(Logger):
    """Writes a run's epochs, checkpoints and end into its folder."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.monitor = ""
        self.saver = Saver()

    def start(self, run: Run, p: Prepared, resumed_after: int) -> None:
        self.monitor = p.monitor
        # a resumed run keeps the rows of the epochs its checkpoint holds
        self.run.start_metrics(p.columns(), keep_epochs=resumed_after)

    def epoch(
        self, row: Mapping[str, float], checkpoint: Checkpoint, last: bool, best: bool
    ) -> None:
        # Ctrl-C and SIGTERM wait until the row is written and its checkpoints are on their
        # way (finish waits for them), so an interrupted run's last row and last.pt agree.
        # The row goes first and last.pt last: a SIGKILL before last.pt is whole leaves it
        # behind the row and best.pt, and resume drops the rows past last.pt and trains
        # those epochs again, rewriting both alike.
        with deferred_signals():
            self.saver.check()  # an earlier checkpoint that could not be written stops the run
            self.run.log_epoch(row)
            if last or best:
                names = [name for name, due in ((BEST, best), (LAST, last)) if due]
                paths = [self.run.checkpoint_path(name) for name in names]
                self.saver.put(paths, saved_bytes(checkpoint(), paths[0]))

    def finish(self, status: str, result: FitResult | None, error: str | None) -> None:
        # every checkpoint is on disk before run.json says how the run ended. One that could
        # not be written fails a run that would be completed (raised here: the caller marks
        # it failed, naming the file); a run that ended otherwise keeps its status, last.pt
        # as last saved (a resume goes on from there) and the error
        failure = self.saver.close()
        if failure is not None and result is not None:
            raise failure
        if result is None:
            error = error or (str(failure) if failure is not None else None)
            self.run.finish(status, **({"error": error} if error is not None else {}))
            return
        self.run.finish(
            status,
            best_checkpoint={"epoch": result.best_epoch, self.monitor: result.best_value},
            stopped_early=result.stopped_early,
        )


class Saver:
    """Writes checkpoints on a thread of its own, in the order they are put, each through
    runs.files.write_bytes_atomic: training goes on while the disk syncs them (an epoch of
    circles trains in 8 ms; syncing best.pt and last.pt takes 10-40 ms). At most one is
    waiting, so a slow disk holds training back rather than filling the memory. After a
    write fails nothing more is written, `check` raises that failure and `close` returns it."""

    def __init__(self) -> None:
        self.jobs: queue.Queue[tuple[Sequence[Path], bytes] | None] = queue.Queue(maxsize=1)
        self.failure: BaseException | None = None
        self.thread: threading.Thread | None = None

    def put(self, paths: Sequence[Path], data: bytes) -> None:
        """Write `data` to each of `paths`, in that order, after what was put before."""
        if self.thread is None:
            # a daemon: a process that stops without finishing its run (a write error it
            # reports) is not held up; the files being written are then kept as last saved
            self.thread = threading.Thread(target=self._work, name="nncli checkpoints", daemon=True)
            self.thread.start()
        self.jobs.put((paths, data))

    def check(self) -> None:
        if self.failure is not None:
            raise self.failure

    def close(self) -> BaseException | None:
        """Return once everything put is written, with the failure if one was not."""
        if self.thread is not None:
            self.jobs.put(None)
            self.thread.join()
            self.thread = None
        return self.failure

    def _work(self) -> None:
        while (job := self.jobs.get()) is not None:
            paths, data = job
            if self.failure is not None:
                continue
            try:
                for path in paths:
                    write_bytes_atomic(path, data)
            except BaseException as exc:  # raised in the training thread, by check or finish
                self.failure = exc
