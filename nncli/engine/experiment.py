"""One `nncli train`: prepare, create the run folder, fit, plot, and record how it ended.

Nothing here prints: progress and messages go to the run's loggers (nncli/loggers/): the
run folder's, the console's the CLI passes in, and those the file names under `loggers:`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import platform
import subprocess
import sys
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

import nncli
from nncli.config import yamlio
from nncli.config.spec import Spec, load_spec, resolved
from nncli.engine import distributed
from nncli.engine.fit import FitResult, Tracker, fit
from nncli.engine.prepare import Prepared, prepare
from nncli.engine.run_figures import write_plots
from nncli.engine.signals import deferred_signals
from nncli.engine.state import load_checkpoint, load_weights, restore
from nncli.errors import (
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    NncliError,
    RunDiverged,
    RunInterrupted,
    RunPruned,
    first_line,
)
from nncli.loggers.base import Logger, Loggers, loggers
from nncli.loggers.run_folder import RunFolderLogger
from nncli.runs.files import (
    CHECKPOINTS,
    CONFIG,
    LAST,
    PLOTS,
    REPORT,
    RUN_JSON,
    WriteError,
    as_write_error,
    now,
    remove_temporaries,
    reserve_space,
    write_atomic,
)
from nncli.runs.folder import Run, kept_rows
from nncli.runs.lock import locked
from nncli.runs.record import RunInfo, flatten, read_metrics, read_run

SMOKE_BATCHES = 2


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
    console: Logger,
    smoke: bool = False,
) -> tuple[Run | None, FitResult]:
    """Train `spec` into a new run folder under `runs_dir` (None on ranks other than 0).

    Mistakes in the user's input raise NncliError before the folder exists. Once it
    exists, the run ends `completed`, `interrupted` (RunInterrupted, naming the folder, is
    raised; before the folder exists it names none) or `failed` (the traceback goes to
    log.txt and the exception propagates).
    """
    p = prepare(spec)
    info = {
        "spec_file": str(spec_file),
        "command": ["nncli", *sys.argv[1:]],  # as typed, however started (python -m)
        "epochs": spec.train.epochs,
        "epochs_done": 0,
        "device": str(p.device),
        "seed": spec.seed,
        "n_params": p.n_params,
        "task": p.task.kind,
        "monitor": p.monitor,
        "samples": {name: len(x) for name, (x, _) in p.splits.items()},
        "input_shape": list(p.splits["train"][0].shape[1:]),
        "output": p.task.output,
        "class_names": p.task.class_names,
        "smoke": smoke,
        "versions": versions(),
        "git_commit": git_commit(spec_file.resolve().parent),
    }
    assert spec.name is not None  # load_spec fills it
    if not p.rank.main:
        return _follow(p, console, smoke)
    run: Run | None = None
    try:
        with deferred_signals():  # Ctrl-C waits until the folder is whole and recorded
            # p.spec: with what prepare learned from the data (an embedding's vocab)
            config = yamlio.dump(resolved(p.spec))
            run = Run.create(runs_dir, spec.name, spec_text, config, info)
            record = os.environ.get(distributed.RUN_RECORD)
            if record:  # the launcher or sweep that started this process learns the folder
                with contextlib.suppress(OSError):  # (it is gone: nobody is waiting)
                    Path(record).write_text(str(run.path), encoding="utf-8")
    except BaseException as exc:
        distributed.share("")  # the other ranks stop instead of waiting for a path
        if run is not None and isinstance(exc, RunInterrupted):
            raise _interrupted(run, exc) from None
        raise
    distributed.share(str(run.path))
    try:
        with locked(run.path):
            result = _execute(run, p, console, smoke=smoke)
    except (KeyboardInterrupt, RunInterrupted) as exc:
        if isinstance(exc, RunInterrupted) and exc.folder is not None:
            raise  # _execute marked the run
        raise _interrupted(run, exc) from None
    return run, result


def _set_up(run: Run, p: Prepared, console: Logger) -> None:
    """What a new run folder holds before its first epoch, besides Run.create's files."""
    p.dataset.save_preprocessing(run.path)  # what predict and eval apply to new rows
    for warning in p.dataset.warnings:
        run.log(f"warning: {warning}")
        console.note(warning)


def _interrupted(run: Run, exc: BaseException) -> RunInterrupted:
    """Ctrl-C or SIGTERM between the folder's creation and the first epoch: the run is
    marked interrupted, and the error names it."""
    run.finish("interrupted")
    code = exc.exit_code if isinstance(exc, RunInterrupted) else EXIT_INTERRUPTED
    return RunInterrupted(code, run.path)


def _follow(p: Prepared, console: Logger, smoke: bool) -> tuple[Run | None, FitResult]:
    """A rank other than 0: wait for rank 0's run folder, then train along, writing nothing."""
    if not distributed.share(""):
        raise RunInterrupted(EXIT_INTERNAL)  # rank 0 could not create the folder and says why
    return None, fit(p, Loggers([]), SMOKE_BATCHES if smoke else None)  # writes nothing


def resume_experiment(
    folder: Path, console: Logger, epochs: int | None = None
) -> tuple[Run | None, FitResult]:
    """Continue an interrupted, failed or killed run in its own folder from last.pt.

    `epochs` extends a run (a completed one too, and one that stopped early, whose early
    stopping then counts anew) to that many epochs. A run that is
    complete, diverged, still running, or whose config.yaml was edited is refused. Under
    torch.distributed every rank resumes from the same checkpoint; rank 0 alone checks
    and writes.
    """
    target = epochs or read_run(folder).epochs or 0
    overrides = [f"train.epochs={target}"] if epochs is not None else []
    spec = load_spec(folder / CONFIG, overrides)
    last = folder / CHECKPOINTS / LAST
    if not distributed.current().main:
        p = prepare(spec)  # joins the process group
        if not distributed.share(""):
            raise RunInterrupted(EXIT_INTERNAL)  # rank 0 refused and says why
        state = load_checkpoint(last) if last.is_file() else None
        return None, fit(p, Loggers([]), None, state)

    shared = False
    running: Run | None = None  # the run once run.json says it is running again
    try:
        with locked(folder):
            info = read_run(folder)  # read under the lock: as no other resume leaves it
            # everything read and checked before the first write: a run that cannot be
            # resumed is left exactly as it was, not marked failed
            state = _check_resumable(folder, info, epochs, target, spec)
            p = prepare(spec)
            if state is not None:
                _check_state(folder, state, p)
                if epochs is not None and info.stopped_early:
                    # asked for more epochs, a run that stopped early trains them: early
                    # stopping counts stale epochs anew from where it stopped
                    state = {**state, "tracker": {**state["tracker"], "stale": 0}}
            distributed.share(str(folder))
            shared = True
            run = Run.open(info)
            remove_temporaries(folder)
            reserve_space(folder)  # finish frees it to record the status on a full disk
            if epochs is not None:
                write_atomic(folder / CONFIG, yamlio.dump(resolved(spec)))
            start = int(state["epoch"]) if state is not None else 0
            resumed = [*(info.resumed or []), {"at": now(), "after_epoch": start}]
            run.write_info(status="running", epochs=target, resumed=resumed, error=None)
            running = run
            result = _execute(run, p, console, resume=state)
    except BaseException as exc:
        if not shared:
            distributed.share("")  # the other ranks stop instead of waiting
        stopped = isinstance(exc, KeyboardInterrupt | RunInterrupted)
        if running is not None and stopped and getattr(exc, "folder", None) is None:
            # before _execute's try, or a second Ctrl-C while it marked the run
            raise _interrupted(running, exc) from None
        raise
    return run, result


# what fit's restore reads of a checkpoint
RESUMED_FROM = ("model", "optimizer", "epoch", "tracker", "rng", "config")


def _check_resumable(
    folder: Path, info: RunInfo, epochs: int | None, target: int, spec: Spec
) -> dict[str, Any] | None:
    """last.pt's state to continue from (None: from the start), or NncliError where the
    run's status does not allow it, or last.pt lacks an entry fit reads or was saved with
    another config than `spec`."""
    status, done = info.status, info.epochs_done or 0
    if status == "completed" and (epochs is None or target <= done):
        raise NncliError(
            f"{folder} is completed ({done} epochs); to train it further give "
            f"--epochs N with N above {done}"
        )
    if status == "diverged":
        raise NncliError(
            f"{folder} diverged; resuming would diverge again. Start a new run with a "
            f"lower learning rate: nncli train {folder / CONFIG} --set optimizer.lr=..."
        )
    if epochs is not None and epochs < done:
        raise NncliError(f"--epochs {epochs} is below the {done} epochs already done")
    last = folder / CHECKPOINTS / LAST
    if not last.is_file():
        return None
    state = load_checkpoint(last)
    missing = [key for key in RESUMED_FROM if key not in state]
    if missing:
        raise NncliError(
            f"{last} cannot be resumed: it has no '{missing[0]}' entry (it holds weights only: "
            "use it with predict, eval or export, or train the run again)"
        )
    edited = config_changes(state["config"], resolved(spec))
    if edited:
        raise NncliError(
            f"{folder / CONFIG} was edited after the run started "
            f"({'; '.join(edited)}); a resumed run must keep its config. Undo the "
            f"edit, or start a new run from it: nncli train {folder / CONFIG}"
        )
    return state


def _check_state(folder: Path, state: Mapping[str, Any], p: Prepared) -> None:
    """NncliError unless `state` loads into the prepared run as fit will load it, and
    metrics.csv has the run's columns and a row for each epoch it was saved after."""

    last = folder / CHECKPOINTS / LAST
    load_weights(p.model, state["model"], last, folder / CONFIG)  # names a misfit tensor
    try:  # as fit will: the optimizer's, scheduler's and random states must fit too
        start = restore(p, state, torch.Generator(), Tracker(p.mode))
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as exc:
        raise NncliError(f"{last} cannot be resumed: {first_line(exc)}") from None
    read_metrics(folder)  # names a missing file or one that is not text
    kept_rows(folder, p.columns(), start)  # the columns and rows the run goes on from


def config_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """`key: old -> new` for each setting that differs (train.epochs aside: it may grow)."""
    old, new = flatten(before), flatten(after)
    keys = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys if k != "train.epochs"]


def _execute(
    run: Run,
    p: Prepared,
    console: Logger,
    smoke: bool = False,
    resume: Mapping[str, Any] | None = None,
) -> FitResult:
    """Fit into an open run folder and record how it ended (the one place statuses are set)."""
    out = Loggers([RunFolderLogger(run), console])
    try:
        if resume is None:
            _set_up(run, p, console)
        for entry in p.spec.loggers:
            out.add(entry.type, functools.partial(loggers.get(entry.type).build, entry, run.path))
        out.start(run, p, int(resume["epoch"]) if resume else 0)
        result = fit(p, out, SMOKE_BATCHES if smoke else None, resume)
        # every epoch's row, those before a resume too, as metrics.csv holds them
        whole = dataclasses.replace(result, rows=read_metrics(run.path))
        if os.environ.get(distributed.PLOTS_ENV) != "off":
            out.artifacts(write_plots(run.path / PLOTS, p, whole))
        out.finish("completed", result, None)
    except (KeyboardInterrupt, RunInterrupted) as exc:
        out.finish("interrupted", None, None)
        _write_report(run, out)
        code = exc.exit_code if isinstance(exc, RunInterrupted) else EXIT_INTERRUPTED
        raise RunInterrupted(code, run.path) from None
    except RunDiverged as exc:
        out.finish("diverged", None, str(exc))
        _write_report(run, out)
        raise
    except RunPruned:  # a sweep's pruner stopped a poor trial: it keeps what it reached
        out.finish("pruned", None, None)
        raise
    except BaseException as exc:
        failure = as_write_error(exc, run.path)
        if failure is not None:
            raise _stopped_writing(run, failure) from None  # no room for a report either
        with contextlib.suppress(WriteError):  # a full disk must not hide the real failure
            run.log(traceback.format_exc())
        out.finish("failed", None, f"{type(exc).__name__}: {exc}")
        _write_report(run, out)
        raise
    _write_report(run, out)
    return result


def _write_report(run: Run, out: Loggers) -> None:
    """report.html, once run.json says how the run ended; never the run's failure: an
    error (or a Ctrl-C while it is written) is a warning."""
    from nncli.report.run import write_run_report

    try:
        write_run_report(run.path)
    except (Exception, KeyboardInterrupt, RunInterrupted) as exc:  # a Ctrl-C is no Exception
        with contextlib.suppress(Exception):  # a full disk that cannot take log.txt either
            out.note(f"{run.path / REPORT} was not written: {first_line(exc)}")


def _stopped_writing(run: Run, failure: WriteError) -> WriteError:
    """The error for a run that could not write its folder (disk full, read-only): it is
    marked failed where run.json can still be written; its checkpoints stay as the last
    complete save left them, since each is written aside and renamed."""
    try:
        run.finish("failed", error=str(failure))
        marked = f"the run is marked failed: {run.path}"
    except (OSError, WriteError):
        marked = f"{run.path / RUN_JSON} could not be updated either"
    return WriteError(
        f"{failure}; {marked}. Its checkpoints are kept as last saved; once there is room, "
        f"continue it with: nncli resume {run.path}"
    )
