"""One `nncli train`: prepare, create the run folder, fit, plot, and record how it ended.

Nothing here prints: progress and messages go to a Reporter that the CLI renders.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

import nncli
from nncli import plots, yamlio
from nncli.errors import RunInterrupted
from nncli.model import summary
from nncli.runs import BEST, LAST, PLOTS, Run
from nncli.spec import Spec, resolved
from nncli.train import FitResult, Prepared, evaluate, fit, predict, predict_classes, prepare

SMOKE_BATCHES = 2


class Reporter(Protocol):
    """What the CLI shows while a run trains."""

    def start(self, run: Run, p: Prepared) -> None: ...

    def batch(self, epoch: int, batch: int, n_batches: int, loss: torch.Tensor) -> None: ...

    def epoch(self, row: Mapping[str, float], improved: bool) -> None: ...


@dataclass
class _RunSink:
    """Writes each epoch to the run folder (row, last.pt, best.pt), then tells the reporter."""

    run: Run
    reporter: Reporter

    def epoch_end(
        self, row: Mapping[str, float], improved: bool, state: Callable[[], dict[str, Any]]
    ) -> None:
        self.run.log_epoch(row)
        checkpoint = state()
        save_atomic(checkpoint, self.run.checkpoint_path(LAST))
        if improved:
            save_atomic(checkpoint, self.run.checkpoint_path(BEST))
        self.reporter.epoch(row, improved)

    def batch_end(self, epoch: int, batch: int, n_batches: int, loss: torch.Tensor) -> None:
        self.reporter.batch(epoch, batch, n_batches, loss)


def save_atomic(obj: dict[str, Any], path: Path) -> None:
    """torch.save to a temporary file, then rename: a crash leaves the old file whole."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def git_commit(folder: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "nncli": nncli.__version__,
    }


def train_experiment(
    spec: Spec,
    spec_file: Path,
    spec_text: str,
    runs_dir: Path,
    reporter: Reporter,
    smoke: bool = False,
) -> tuple[Run, FitResult]:
    """Train `spec` into a new run folder under `runs_dir`.

    Mistakes in the user's input raise NncliError before the folder exists. Once it
    exists, the run ends `completed`, `interrupted` (RunInterrupted is raised) or `failed`
    (the traceback goes to log.txt and the exception propagates).
    """
    p = prepare(spec)
    info = {
        "spec_file": str(spec_file),
        "command": sys.argv,
        "epochs": spec.train.epochs,
        "epochs_done": 0,
        "device": str(p.device),
        "seed": spec.seed,
        "n_params": p.n_params,
        "task": p.task.kind,
        "monitor": p.monitor,
        "samples": {name: len(x) for name, (x, _) in p.splits.items()},
        "smoke": smoke,
        "versions": versions(),
        "git_commit": git_commit(spec_file.resolve().parent),
    }
    assert spec.name is not None  # load_spec fills it
    run = Run.create(runs_dir, spec.name, spec_text, yamlio.dump(resolved(spec)), info)
    try:
        reporter.start(run, p)
        run.start_metrics(p.columns())
        result = fit(p, _RunSink(run, reporter), SMOKE_BATCHES if smoke else None)
        write_plots(run.path / PLOTS, p, result)
        run.finish("completed", best_epoch=result.best_epoch)
    except (KeyboardInterrupt, RunInterrupted) as exc:
        run.finish("interrupted")
        raise exc if isinstance(exc, RunInterrupted) else RunInterrupted() from None
    except BaseException as exc:
        run.log(traceback.format_exc())
        run.finish("failed", error=f"{type(exc).__name__}: {exc}")
        raise
    return run, result


def layer_table(p: Prepared) -> list[dict[str, Any]]:
    return summary(p.spec.model.layers, p.model, p.shapes)


def write_plots(folder: Path, p: Prepared, result: FitResult) -> list[Path]:
    """The run's figures: curves, and per task a confusion matrix, decision boundary or
    predicted-vs-true plot on the first held-out split (train where none is held out)."""
    name = p.spec.name or "run"
    written = plots.plot_curves(result.rows, p.metrics, folder, name)
    split = next((s for s in ("test", "val") if s in p.splits), "train")
    x, y = p.splits[split]
    meter = result.meters[split]
    if split == "train":  # the train meter holds in-flight counts; evaluate afresh
        with torch.no_grad():
            p.model.eval()
            evaluate(p.model, p.loss_fn, x, y, meter, len(x))
    x_host, y_host = x.cpu().numpy(), y.cpu().numpy()
    title = f"{name} ({split})"
    if p.task.kind in ("binary", "multiclass"):
        names = p.task.class_names or [str(c) for c in range(len(meter.confusion()))]
        written.append(
            plots.plot_confusion_matrix(
                np.array(meter.confusion()), names, folder / "confusion_matrix.png", title
            )
        )
        if x_host.shape[1:] == (2,):
            labels = y_host.reshape(len(y_host)).astype(np.int64)
            written.append(
                plots.plot_decision_boundary(
                    lambda grid: predict_classes(p, grid),
                    x_host,
                    labels,
                    names,
                    folder / "decision_boundary.png",
                    title,
                )
            )
    elif p.task.kind == "regression":
        written.append(
            plots.plot_predictions(y_host, predict(p, x_host), folder / "predictions.png", title)
        )
    return written
