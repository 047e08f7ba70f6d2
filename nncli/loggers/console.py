"""How the CLI shows a training run: Rich progress on a terminal, one plain line per epoch
elsewhere (CI), only the run folder with --quiet; every line shown also goes to log.txt."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rich.console import Console

from nncli.loggers.base import Checkpoint, Logger

if TYPE_CHECKING:
    import torch
    from rich.progress import Progress, TaskID

    from nncli.engine.prepare import Prepared
    from nncli.runs.folder import Run

REFRESH_S = 0.25  # how often the batch bar reads the current loss (a host sync)


def number(value: float) -> str:
    """Metrics at a glance: 4 decimals in the usual range, scientific beyond it."""
    return f"{value:.4f}" if value == 0 or 1e-3 <= abs(value) < 1e5 else f"{value:.3e}"


def epoch_line(row: Mapping[str, float], epochs: int) -> str:
    width = len(str(epochs))
    metrics = "  ".join(
        f"{k} {number(v)}" for k, v in row.items() if k not in ("epoch", "lr", "time_s")
    )
    return f"epoch {int(row['epoch']):>{width}}/{epochs}  {metrics}  ({row['time_s']:.2f}s)"


def monitor_line(p: Prepared) -> str:
    """What picks best.pt (and when to stop early), and that the test split does not."""
    better = "lower" if p.mode == "min" else "higher"
    stops = " and when to stop early" if p.spec.train.early_stopping else ""
    why = "" if "val" in p.splits else " (there is no val split: data.split.val adds one)"
    return (
        f"monitor {p.monitor} ({better} is better) picks best.pt{stops}{why}; "
        "the test split chooses nothing"
    )


class ConsoleLogger(Logger):
    """The run on the terminal: a line per epoch (a progress bar on a terminal)."""

    def __init__(self, console: Console, quiet: bool = False) -> None:
        self.console, self.quiet = console, quiet
        self.errors = Console(stderr=True, highlight=False)
        self.run: Run | None = None
        self.epochs = 0
        self.progress: Progress | None = None
        self._epoch_task: TaskID | None = None
        self._batch_task: TaskID | None = None
        self._last_refresh = 0.0

    def say(self, text: str, style: str | None = None) -> None:
        """Show a line (unless quiet) and keep it in the run's log."""
        if self.run is not None:
            self.run.log(text)
        if not self.quiet:
            self.console.print(text, style=style, highlight=False, soft_wrap=True)

    def start(self, run: Run, p: Prepared, resumed_after: int) -> None:
        self.run, self.epochs = run, p.spec.train.epochs
        sizes = ", ".join(f"{name} {len(x)}" for name, (x, _) in p.splits.items())
        self.say(
            f"{p.spec.name}: {p.task.kind} task on {p.spec.data.source} data ({sizes}), "
            f"{p.n_params:,} parameters, device {p.device}"
        )
        if p.rank.distributed:
            share = p.spec.train.batch_size // p.rank.world
            self.say(
                f"{p.rank.world} processes: global batch {p.spec.train.batch_size} = "
                f"{p.rank.world} x {share} per process"
            )
        self.say(monitor_line(p))
        from nncli.engine.batches import data_line

        self.say(data_line(p.splits))  # in memory, or streamed from disk
        self.say(f"run folder: {run.path}")
        if self.console.is_interactive and not self.quiet:  # (as progress.measured)
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[loss]}"),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
            )
            self.progress.start()
            self._epoch_task = self.progress.add_task("epochs", total=self.epochs, loss="")
            self._batch_task = self.progress.add_task("batches", total=None, loss="")

    def batch(self, epoch: int, batch: int, n_batches: int, loss: torch.Tensor) -> None:
        if self.progress is None or self._batch_task is None:
            return
        now = time.perf_counter()
        if now - self._last_refresh < REFRESH_S and batch + 1 < n_batches:
            return
        self._last_refresh = now
        self.progress.update(
            self._batch_task, completed=batch + 1, total=n_batches, loss=f"loss {loss.item():.4g}"
        )

    def epoch(
        self, row: Mapping[str, float], checkpoint: Checkpoint, last: bool, best: bool
    ) -> None:
        line = epoch_line(row, self.epochs)
        if self.progress is not None and self._epoch_task is not None:
            self.progress.update(self._epoch_task, completed=int(row["epoch"]))
        self.say(line + ("  *" if best else ""))

    def note(self, text: str) -> None:
        """A warning: shown in yellow on stderr (even when quiet) and kept in the log."""
        if self.run is not None:
            self.run.log(f"warning: {text}")
        self.errors.print(f"[yellow]warning[/yellow] {text}", markup=True, soft_wrap=True)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def summary(self, run: Run) -> None:
        final: dict[str, Any] = run.info.get("final", {})
        held = [k for k in final if k.startswith(("test_", "val_")) and not k.endswith("loss")]
        shown = held or [k for k in final if k not in ("epoch", "lr", "time_s")]
        scores = ", ".join(f"{k} {number(final[k])}" for k in shown)
        monitor = run.info.get("monitor", "")
        best = run.info.get("best_checkpoint") or {}
        best_text = (
            f"; best.pt is epoch {best['epoch']} ({monitor} {number(best[monitor])})"
            if best.get("epoch")
            else ""
        )
        if run.info.get("stopped_early"):
            best_text += f"; stopped early after epoch {run.info.get('epochs_done')}"
        self.say(f"done in {run.info.get('duration_s', 0):.1f}s: {scores}{best_text}")
