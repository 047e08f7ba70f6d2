"""The run folder as a logger: each epoch's row to metrics.csv, its checkpoints to
last.pt and best.pt, and how the run ended to run.json."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from nncli.engine.signals import deferred_signals
from nncli.engine.state import save_atomic
from nncli.loggers.base import Checkpoint, Logger
from nncli.runs.files import BEST, LAST
from nncli.runs.folder import Run

if TYPE_CHECKING:
    from nncli.engine.fit import FitResult
    from nncli.engine.prepare import Prepared


class RunFolderLogger(Logger):
    """Writes a run's epochs, checkpoints and end into its folder."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.monitor = ""

    def start(self, run: Run, p: Prepared, resumed_after: int) -> None:
        self.monitor = p.monitor
        # a resumed run keeps the rows of the epochs its checkpoint holds
        self.run.start_metrics(p.columns(), keep_epochs=resumed_after)

    def epoch(
        self, row: Mapping[str, float], checkpoint: Checkpoint, last: bool, best: bool
    ) -> None:
        # Ctrl-C and SIGTERM wait until the row and its checkpoints are written, so an
        # interrupted run's last row and last.pt agree. The row goes first and last.pt last:
        # a SIGKILL before last.pt is whole leaves it behind the row and best.pt, and resume
        # drops the rows past last.pt and trains those epochs again, rewriting both alike.
        with deferred_signals():
            self.run.log_epoch(row)
            if last or best:
                state = checkpoint()
                if best:
                    save_atomic(state, self.run.checkpoint_path(BEST))
                if last:
                    save_atomic(state, self.run.checkpoint_path(LAST))

    def finish(self, status: str, result: FitResult | None, error: str | None) -> None:
        if result is None:
            self.run.finish(status, **({"error": error} if error is not None else {}))
            return
        self.run.finish(
            status,
            best_checkpoint={"epoch": result.best_epoch, self.monitor: result.best_value},
            stopped_early=result.stopped_early,
        )
