"""The Logger interface: all the engine tells anyone about a run, and the registry of the
loggers an experiment file can add (`loggers:`). Torch-free: the spec imports it.

A run always has two loggers: the run folder's (metrics.csv, checkpoints, run.json; see
run_folder.py) and the console's (console.py). Others (TensorBoard, MLflow, ...) are
registered entries built from the file; one that fails warns once and is dropped, it
never stops training.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nncli.errors import RunInterrupted, first_line
from nncli.registry import Params, Registry

if TYPE_CHECKING:
    import torch

    from nncli.engine.fit import FitResult
    from nncli.engine.prepare import Prepared
    from nncli.runs.folder import Run

Checkpoint = Callable[[], dict[str, Any]]


class Logger:
    """What a run reports, in order: start, then per batch and per epoch, the artifacts
    (figures) at the end, and finish with the status. Every method does nothing unless a
    logger overrides it."""

    def start(self, run: Run, p: Prepared, resumed_after: int) -> None:
        """The run begins (or resumes after epoch `resumed_after`); `p.spec` is resolved."""

    def batch(self, epoch: int, batch: int, n_batches: int, loss: torch.Tensor) -> None:
        """A training batch is done (`loss` is still on the device)."""

    def epoch(
        self, row: Mapping[str, float], checkpoint: Checkpoint, last: bool, best: bool
    ) -> None:
        """An epoch's row; `checkpoint()` is its training state, due as last.pt when
        `last`, and as best.pt when `best` (the monitored metric improved)."""

    def artifacts(self, paths: Sequence[Path]) -> None:
        """Files the run wrote for people (its figures)."""

    def note(self, text: str) -> None:
        """A warning the user should see."""

    def finish(self, status: str, result: FitResult | None, error: str | None) -> None:
        """The run ended: completed, interrupted, diverged or failed."""


class LoggerParams(Params):
    """Base of a logger entry's parameters."""


# entry: build(params, run folder) -> Logger
loggers: Registry[Callable[..., Logger]] = Registry("logger", key="type", base=LoggerParams)


class Loggers:
    """The run's loggers as one: each call goes to every logger in order. `required` ones
    (the run folder, the console) raise; any other that fails is reported once through
    `note` and dropped, so a tracker that goes down never stops training."""

    def __init__(self, required: Sequence[Logger], optional: Sequence[Logger] = ()) -> None:
        self.required = list(required)
        self.optional = list(optional)

    def add(self, name: str, build: Callable[[], Logger]) -> None:
        """Add an optional logger; one that cannot be built is reported and left out."""
        try:
            self.optional.append(build())
        except Exception as exc:  # e.g. a tracking server that does not answer
            self.note(f"logger {name} is left out of this run: {first_line(exc)}")

    def _each(
        self,
        call: Callable[[Logger], None],
        failures: tuple[type[BaseException], ...] = (Exception,),
    ) -> None:
        for logger in self.required:
            call(logger)
        for logger in list(self.optional):
            try:
                call(logger)
            except failures as exc:  # a tracker's failure is never the run's
                self.optional.remove(logger)
                self.note(
                    f"logger {type(logger).__name__} failed and is switched off for this run: "
                    f"{first_line(exc)}"
                )

    def start(self, run: Run, p: Prepared, resumed_after: int) -> None:
        self._each(lambda lg: lg.start(run, p, resumed_after))

    def batch_end(self, epoch: int, batch: int, n_batches: int, loss: torch.Tensor) -> None:
        self._each(lambda lg: lg.batch(epoch, batch, n_batches, loss))

    def epoch_end(
        self, row: Mapping[str, float], checkpoint: Checkpoint, last: bool, best: bool
    ) -> None:
        self._each(lambda lg: lg.epoch(row, checkpoint, last, best))

    def artifacts(self, paths: Sequence[Path]) -> None:
        self._each(lambda lg: lg.artifacts(paths))

    def note(self, text: str) -> None:
        for logger in self.required:
            logger.note(text)

    def finish(self, status: str, result: FitResult | None, error: str | None) -> None:
        # the run folder (required, first) has recorded how the run ended: a Ctrl-C while a
        # tracker is told (a slow request) is that tracker's failure, not a new end
        failures = (Exception, KeyboardInterrupt, RunInterrupted)
        self._each(lambda lg: lg.finish(status, result, error), failures)
