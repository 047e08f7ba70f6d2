"""`nncli train` and `nncli resume`: a run with console progress, the torchrun launcher,
and how a run's end maps to messages and exit codes."""

from __future__ import annotations

import contextlib
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from nncli.config.spec import Experiment
    from nncli.engine.fit import FitResult
    from nncli.loggers.console import ConsoleLogger
    from nncli.runs.folder import Run

from nncli.cli import complete
from nncli.cli.common import (
    QuietOption,
    SetOption,
    err,
    out,
    user_errors,
    warn_lint,
)
from nncli.errors import EXIT_INTERNAL, NncliError, RunInterrupted
from nncli.frozen import import_frozen


def train(
    file: Annotated[
        Path | None, typer.Argument(help="Experiment file (YAML).", show_default=False)
    ] = None,
    set_: SetOption = None,
    runs_dir: Annotated[
        Path, typer.Option("--runs-dir", help="Parent folder of run folders.")
    ] = Path("runs"),
    smoke: Annotated[
        bool,
        typer.Option(
            "--smoke", help="CI profile: cpu, one epoch of at most two batches, every file written."
        ),
    ] = False,
    resume_run: Annotated[
        Path | None,
        typer.Option("--resume", help="Continue this run folder instead (as `nncli resume`)."),
    ] = None,
    quiet: QuietOption = False,
    nproc: Annotated[
        int,
        typer.Option(
            "--nproc-per-node",
            min=1,
            help="Train as N processes (torch.distributed; one GPU each on cuda, gloo on cpu).",
        ),
    ] = 1,
) -> None:
    """Train an experiment file into a new run folder (its path is the last line printed)."""
    if nproc > 1 and "WORLD_SIZE" not in os.environ:
        _launch(nproc)
    if resume_run is not None:
        with user_errors():
            if file is not None or set_ or smoke:
                raise NncliError(
                    "--resume continues a run as it was configured; give no FILE, --set or "
                    "--smoke with it"
                )
        resume(resume_run, None, quiet)
        return
    from nncli.config.spec import load_experiment

    overrides = list(set_ or [])
    if smoke:
        overrides += ["train.epochs=1", "train.device=cpu"]
    with user_errors():
        if file is None:
            raise NncliError("missing FILE: the experiment file to train (or --resume RUN)")
        exp = load_experiment(file, overrides)
        warn_lint(exp)
    spec, text = exp.spec, exp.doc.text

    _import_engine()
    from nncli.engine.experiment import train_experiment

    _run_training(
        lambda console: train_experiment(spec, file, text, runs_dir, console, smoke=smoke),
        quiet,
        exp=exp,
    )


def resume(
    run: Annotated[
        Path,
        typer.Argument(
            help="The run folder to continue.",
            show_default=False,
            autocompletion=complete.run_folders,
        ),
    ],
    epochs: Annotated[
        int | None,
        typer.Option(
            "--epochs", min=1, help="Train to this many epochs (extends a completed run)."
        ),
    ] = None,
    quiet: QuietOption = False,
) -> None:
    """Continue an interrupted, failed or killed run in its folder, from its last checkpoint."""
    _import_engine()
    from nncli.engine.experiment import resume_experiment

    _run_training(lambda console: resume_experiment(run, console, epochs), quiet, run)


def _import_engine() -> None:
    """Import the engine, torch and torch._dynamo (which every torch.optim optimizer imports
    as it is built), frozen (nncli.frozen); nothing to do in a warm sweep trial, whose
    server imported them."""
    import_frozen(["torch._dynamo", "nncli.engine.experiment"])


def _launch(nproc: int) -> None:
    """Re-run this command as `nproc` processes under torch.distributed.run; exit with its code.

    If a rank dies, the job stops; the run it had created is then marked failed here.
    """
    import tempfile

    from nncli.engine import distributed
    from nncli.runs.folder import Run
    from nncli.runs.record import is_run, read_run

    args = _without_nproc(sys.argv[1:])
    with tempfile.TemporaryDirectory() as tmp:
        record = Path(tmp) / "run"
        code = distributed.launch(nproc, args, str(record))
        folder = Path(record.read_text()) if record.is_file() else None
    outer = os.environ.get(distributed.RUN_RECORD)  # e.g. a sweep's, which looks for it there
    if outer and folder is not None:
        Path(outer).write_text(str(folder), encoding="utf-8")
    if code != 0 and folder is not None and is_run(folder):
        try:
            info = read_run(folder)
            if info.status in ("running", "interrupted"):
                Run.open(info).finish(
                    "failed",
                    error=f"a process of the job failed (exit code {code}); see its error above",
                )
                err.print(f"the run is marked failed: {folder}", soft_wrap=True)
        except NncliError as exc:  # the job's own exit code still says how it ended
            err.print(f"the run could not be marked failed: {exc}", soft_wrap=True, markup=False)
    raise typer.Exit(code)


def _without_nproc(args: list[str]) -> list[str]:
    out: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--nproc-per-node":
            skip = True
        elif not arg.startswith("--nproc-per-node="):
            out.append(arg)
    return out


def _run_training(
    start: Callable[[ConsoleLogger], tuple[Run | None, FitResult]],
    quiet: bool,
    resuming: Path | None = None,
    exp: Experiment | None = None,
) -> None:
    """Run a training call with console progress; map how it ends to messages and exit codes.

    Ctrl-C and SIGTERM mark the run interrupted (exit 130/143), a non-finite loss marks it
    diverged (exit 3), anything unexpected marks it failed (exit 1). `resuming` is the
    folder a resume continues; `exp` the experiment file trained, whose keys errors name.
    """
    from nncli import progress
    from nncli.engine import distributed
    from nncli.errors import RunDiverged, RunPruned
    from nncli.loggers.console import ConsoleLogger

    with user_errors():
        rank = distributed.current()
    if not rank.main:  # rank 0 speaks for the job; the others show only their own failures
        quiet = True
        err.quiet = True
    console = ConsoleLogger(out, quiet=quiet)
    from nncli.engine.signals import training_signals

    handled = contextlib.ExitStack()  # Ctrl-C and SIGTERM stop the run until `finally`
    handled.enter_context(training_signals())
    run = None
    try:
        with user_errors(exp), progress.shown(None if quiet else err):
            try:
                run, _ = start(console)
            except NncliError:
                _let_rank_0_speak(rank.main)
                raise
        console.stop()
        if run is not None:
            console.summary(run)
    except (RunInterrupted, RunDiverged, RunPruned) as exc:
        console.stop()
        folder = console.run.path if console.run else None
        if isinstance(exc, RunDiverged):
            err.print(f"[red]diverged[/red] {exc}", markup=True, soft_wrap=True)
        elif isinstance(exc, RunPruned):
            err.print(f"[yellow]pruned[/yellow] {exc}", markup=True, soft_wrap=True)
        elif run is not None:  # as the summary was shown: the run had ended, and is kept so
            folder = run.path
            status = run.info.get("status")
            said = f"interrupted after the run ended ({status}); it is kept in {folder}"
            err.print(said, soft_wrap=True, markup=False)
        else:
            folder = exc.folder
            if exc.exit_code == EXIT_INTERNAL:  # rank 0 failed, and says why
                _let_rank_0_speak(rank.main)
            err.print(_interrupted(folder, resuming), soft_wrap=True, markup=False)
        if folder:
            out.print(str(folder), soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None
    except (typer.Exit, SystemExit):
        console.stop()
        raise
    except Exception as exc:
        console.stop()
        err.quiet = False  # a rank's own failure is always shown
        _internal(exc, console.run.path if console.run else None)
    finally:
        handled.close()
        distributed.finish()
    if run is not None:
        out.print(str(run.path), soft_wrap=True)


RANK_0_GRACE_S = 10.0


def _let_rank_0_speak(main: bool) -> None:
    """A rank other than 0 stopped for a reason rank 0 meets too (an input error every rank
    finds, or rank 0's own failure): rank 0 says it once and ends the job, and torchrun then
    stops this rank. Exiting first would let torchrun stop rank 0 before it spoke, so this
    rank waits; a reason of its own is shown after the wait."""
    if not main:
        time.sleep(RANK_0_GRACE_S)
        err.quiet = False


def _interrupted(folder: Path | None, resuming: Path | None) -> str:
    """What Ctrl-C or SIGTERM left: the run folder marked interrupted, or none touched."""
    if folder is not None:
        return (
            f"interrupted: the run is marked interrupted; finished epochs are kept in "
            f"{folder} (continue it with: nncli resume {folder})"
        )
    if resuming is not None:
        return f"interrupted before training resumed (continue it with: nncli resume {resuming})"
    return "interrupted before a run folder was made; nothing was written"


def _internal(exc: BaseException, folder: Path | None) -> None:
    """An unexpected failure: one paragraph on the console, the traceback in the run's log."""
    where = f" The run is marked failed; the traceback is in {folder}/log.txt." if folder else ""
    err.print(
        f"[red]internal error[/red] {type(exc).__name__}: {exc}.{where} "
        "This is a bug in nncli or a resource problem (memory, disk); "
        "please report it with the log.",
        markup=True,
        soft_wrap=True,
    )
    if os.environ.get("NNCLI_DEBUG"):
        traceback.print_exc()
    raise typer.Exit(EXIT_INTERNAL)
