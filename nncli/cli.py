"""The `nncli` command line: parses arguments, calls the library, renders with Rich.

torch, matplotlib and pandas are imported inside the commands that need them, so
`nncli --help` and `nncli validate` start fast.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
from rich.console import Console

from nncli.errors import EXIT_INTERNAL, EXIT_TERMINATED, NncliError, RunInterrupted, SpecError
from nncli.tables import Format, render

app = typer.Typer(
    name="nncli",
    help="Train neural networks from YAML experiment files, and compare the runs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        "-s",
        help="Override a key: --set optimizer.lr=0.01 (repeatable).",
        metavar="KEY=VALUE",
    ),
]
FormatOption = Annotated[Format, typer.Option("--format", "-f", help="Output format.")]


@contextmanager
def user_errors() -> Iterator[None]:
    """NncliError -> its message in red on stderr and exit code 2; no traceback."""
    try:
        yield
    except SpecError as exc:
        for problem in exc.problems:
            err.print(f"[red]error[/red] {problem}", markup=True, soft_wrap=True, highlight=False)
        raise typer.Exit(exc.exit_code) from None
    except NncliError as exc:
        err.print(f"[red]error[/red] {exc}", markup=True, soft_wrap=True, highlight=False)
        raise typer.Exit(exc.exit_code) from None


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


@app.command()
def train(
    file: Annotated[Path, typer.Argument(help="Experiment file (YAML).", show_default=False)],
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
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print only the run folder.")
    ] = False,
) -> None:
    """Train an experiment file into a new run folder (its path is the last line printed)."""
    from nncli import yamlio

    overrides = list(set_ or [])
    if smoke:
        overrides += ["train.epochs=1", "train.device=cpu"]
    with user_errors():
        spec = _load(file, overrides)
        text = yamlio.load(file).text

    from nncli.console import ConsoleReporter
    from nncli.experiment import train_experiment

    reporter = ConsoleReporter(out, quiet=quiet)
    previous = signal.signal(signal.SIGTERM, _terminate)
    run = None
    try:
        with user_errors():
            run, result = train_experiment(spec, file, text, runs_dir, reporter, smoke=smoke)
        reporter.stop()
        reporter.summary(run, result.best_epoch)
    except RunInterrupted as exc:
        reporter.stop()
        folder = reporter.run.path if reporter.run else None
        err.print(
            f"interrupted: the run is marked interrupted; finished epochs are kept in {folder}"
        )
        if folder:
            out.print(str(folder))
        raise typer.Exit(exc.exit_code) from None
    except (typer.Exit, SystemExit):
        reporter.stop()
        raise
    except Exception as exc:
        reporter.stop()
        _internal(exc, reporter.run.path if reporter.run else None)
    finally:
        signal.signal(signal.SIGTERM, previous)
    if run is not None:
        out.print(str(run.path), soft_wrap=True)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise RunInterrupted(EXIT_TERMINATED)


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


def _load(file: Path, overrides: list[str]) -> Any:
    from nncli.spec import load_spec

    return load_spec(file, overrides)


@app.command()
def validate(
    files: Annotated[
        list[Path], typer.Argument(help="Experiment files (YAML).", show_default=False)
    ],
    set_: SetOption = None,
    build: Annotated[
        bool,
        typer.Option(
            "--build", help="Also build the model on cpu and run one batch forward (imports torch)."
        ),
    ] = False,
) -> None:
    """Check experiment files without training; every problem of every file is listed."""
    failed = 0
    for file in files:
        try:
            with user_errors():
                spec = _load(file, list(set_ or []))
                detail = ""
                if build:
                    from nncli.train import prepare

                    p = prepare(
                        spec.model_copy(
                            update={"train": spec.train.model_copy(update={"device": "cpu"})}
                        )
                    )
                    detail = f", {p.task.kind}, {p.n_params:,} parameters"
            out.print(
                f"[green]ok[/green] {file}: {len(spec.model.layers)} layers, "
                f"loss {spec.loss.name}, data {spec.data.source}{detail}",
                markup=True,
                soft_wrap=True,
            )
        except typer.Exit:
            failed += 1
    if failed:
        raise typer.Exit(2)


class Kind(str, Enum):
    layers = "layers"
    losses = "losses"
    optimizers = "optimizers"
    datasets = "datasets"
    metrics = "metrics"


@app.command("list")
def list_(
    kind: Annotated[Kind, typer.Argument(help="What to list.")],
    fmt: FormatOption = Format.table,
) -> None:
    """List the registered layers, losses, optimizers, datasets or metrics, with parameters."""
    from nncli.catalogue import catalogue

    rows = catalogue(kind.value)
    _print(render(rows, list(rows[0]), fmt, title=kind.value))


@app.command()
def schema(
    out_file: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write to a file instead of stdout.")
    ] = None,
) -> None:
    """Print the JSON Schema of experiment files (for editor completion and checking)."""
    from nncli.spec import schema as make_schema

    text = json.dumps(make_schema(), indent=2)
    if out_file is None:
        sys.stdout.write(text + "\n")
    else:
        out_file.write_text(text + "\n", encoding="utf-8")
        out.print(f"wrote {out_file}")


@app.command()
def show(
    run: Annotated[Path, typer.Argument(help="A run folder.", show_default=False)],
    weights: Annotated[
        bool, typer.Option("--weights", help="Print the learned parameters.")
    ] = False,
) -> None:
    """Summarise a run: config, model (with parameter counts), final and best metrics."""
    from nncli.show import describe_run

    with user_errors():
        for item in describe_run(run, weights):
            _print(item)


def _print(item: Any) -> None:
    if isinstance(item, str):
        out.print(item, soft_wrap=True, markup=False)
    else:
        out.print(item)


def main() -> None:
    app()
