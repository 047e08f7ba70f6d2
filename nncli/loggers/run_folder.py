"""The run folder as a logger: each epoch's row to metrics.csv, its checkpoints to
last.pt and best.pt, and how the run ended to run.json."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nncli.engine.signals import deferred_signals
from nncli.engine.state import save_atomic
from nncli.runs.folder import BEST, LAST, Run

if TYPE_CHECKING:
    import torch

    from nncli.engine.experiment import Reporter


@dataclass
class _RunSink:
    """Writes each epoch to the run folder (row, last.pt, best.pt), then tells the reporter."""

    run: Run
    reporter: Reporter

    def epoch_end(
        self, row: Mapping[str, float], state: Callable[[], dict[str, Any]], last: bool, best: bool
    ) -> None:
        # Ctrl-C and SIGTERM wait until the row and its checkpoints are written, so an
        # interrupted run's last row and last.pt agree. The row goes first: a SIGKILL before
        # the checkpoint leaves a row past last.pt, which resume drops and trains again.
        with deferred_signals():
            self.run.log_epoch(row)
            if last or best:
                checkpoint = state()
                if last:
                    save_atomic(checkpoint, self.run.checkpoint_path(LAST))
                if best:
                    save_atomic(checkpoint, self.run.checkpoint_path(BEST))
        self.reporter.epoch(row, best)

    def note(self, text: str) -> None:
        self.reporter.note(text)

    def batch_end(self, epoch: int, batch: int, n_batches: int, loss: torch.Tensor) -> None:
        self.reporter.batch(epoch, batch, n_batches, loss)
