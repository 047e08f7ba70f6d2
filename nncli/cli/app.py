"""The `nncli` app: its commands, each from the module of its group, and the entry point.

A new command is a function in a module of nncli/cli/ plus one line here. torch,
matplotlib and pandas are imported inside the commands that need them, so `nncli --help`
and `nncli validate` start fast.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
from collections.abc import Callable
from functools import cache
from typing import Annotated, Any, NoReturn

import typer

from nncli.cli import check, export_runs, report, runs, sweep, train, trained
from nncli.cli.common import out

app = typer.Typer(
    name="nncli",
    help="Train neural networks from YAML experiment files, and compare the runs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        from nncli import __version__

        out.print(f"nncli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Train neural networks from YAML experiment files, and compare the runs."""


# the commands, in the order `nncli --help` lists them
app.command()(train.train)
app.command()(train.resume)
app.command()(check.validate)
app.command("list")(check.list_)
app.command()(check.schema)
app.command()(runs.show)
app.command()(runs.compare)
app.command()(runs.runs)
app.command()(report.report)
app.command("export-runs")(export_runs.export_runs)
app.command()(trained.plot)
app.command()(trained.export)
app.command()(trained.predict)
app.command("eval")(trained.eval_)
app.command()(sweep.sweep)


@cache
def command() -> Callable[[], Any]:
    """The app as the command `main` runs, built once: typer builds it from the commands'
    signatures (25 ms), which a sweep's fork server does once for all its trials."""
    return typer.main.get_command(app)


def main() -> None:
    import gc

    from nncli.engine import distributed

    rank = distributed.is_rank()
    if rank:
        import faulthandler

        faulthandler.enable()  # a rank killed by a C++ abort shows where it was
    try:
        command()()  # as app() does, with pretty_exceptions_enable=False
    except SystemExit as exc:
        if rank:
            exit_now(exc.code)
        raise
    finally:
        # the process ends here: spare it the final collection of the objects torch and
        # matplotlib built (0.3-0.8 s of `nncli train`'s wall time; see bench/)
        gc.freeze()


def run() -> NoReturn:
    """The `nncli` command (and `python -m nncli`): `main`, then the process ends without
    the interpreter's teardown (exit_now), which freed torch's objects one by
    one for 0.2-0.4 s after every command that imported it."""
    try:
        main()
    except SystemExit as exc:
        exit_now(exc.code)
    exit_now(0)  # (click's standalone main always raises SystemExit)


def exit_now(code: int | str | None) -> NoReturn:
    """End the process once its command is done (its files written and closed, a rank's
    process group destroyed) as Python's own exit does, its non-daemon threads waited for
    and its atexit handlers run (MLflow ends its run there), less the interpreter's
    teardown: freeing torch's objects one by one took 0.2-0.4 s of every command that
    imported it (`nncli train experiments/circles.yaml`: 3 s in all), and under
    torch.distributed gloo's threads can abort a process whose work is complete there
    (SIGABRT, "terminate called without an active exception"), for which torchrun fails the
    whole job."""
    getattr(threading, "_shutdown", lambda: None)()  # what Python's exit runs first, then:
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    with contextlib.suppress(Exception):  # C stdio too: what gloo or NCCL printed
        import ctypes

        ctypes.CDLL(None).fflush(None)
    if isinstance(code, str):  # sys.exit("message") prints it and exits 1
        print(code, file=sys.stderr, flush=True)
        code = 1
    os._exit(code or 0)
