"""`nncli export-runs`: finished runs sent to TensorBoard or MLflow after the fact."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from nncli.cli.common import out, say, user_errors


class Tool(str, Enum):
    tensorboard = "tensorboard"
    mlflow = "mlflow"


def export_runs(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Run folders, folders of run folders (runs/), or sweep folders.",
            show_default=False,
            metavar="RUN...",
        ),
    ],
    to: Annotated[Tool, typer.Option("--to", help="Where to send them.", show_default=False)],
    tracking_uri: Annotated[
        str | None,
        typer.Option(
            "--tracking-uri",
            metavar="URI",
            help="MLflow's store (http://..., sqlite:///mlflow.db) [default: "
            "MLFLOW_TRACKING_URI, else MLflow's local store]",
            show_default=False,
        ),
    ] = None,
    log_dir: Annotated[
        Path | None,
        typer.Option(
            "--log-dir",
            metavar="DIR",
            help="TensorBoard events in DIR/<run> [default: in each run folder]",
            show_default=False,
        ),
    ] = None,
    experiment: Annotated[
        str | None,
        typer.Option(
            "--experiment",
            metavar="NAME",
            help="The MLflow experiment [default: each run's name]",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Send finished runs trained without a logger to TensorBoard or MLflow.

    \b
    Each run's config (as hparams or params), every metrics.csv row at its epoch, its
    figures and how it ended (completed, interrupted, failed, diverged) are replayed.
    Every run is read first: a damaged one stops the command (exit code 2) before
    anything is sent. Runs still running, and runs already there (TensorBoard events in
    their log dir, an MLflow run of their folder), are skipped with a warning, so
    exporting a folder again sends only its new runs. One line per run sent on stdout.
    """
    from nncli.loggers.export import export_runs as send
    from nncli.sweep.state import RUNS, SWEEP_JSON

    # a sweep's trials are the run folders in its runs/
    folders = [path / RUNS if (path / SWEEP_JSON).is_file() else path for path in paths]
    with user_errors():
        results = send(folders, to.value, tracking_uri, log_dir, experiment)
    for result in results:
        if result.sent:
            out.print(f"{result.run} -> {result.where}", soft_wrap=True, markup=False)
        else:
            say("warning", "yellow", f"{result.run} skipped: {result.where}")
