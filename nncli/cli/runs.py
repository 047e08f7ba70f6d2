"""`nncli show`, `nncli compare` and `nncli runs`: run folders read back and side by side."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from nncli.cli.common import (
    FormatOption,
    err,
    natural_width,
    out,
    print_item,
    user_errors,
)
from nncli.tables import Format, render


def show(
    run: Annotated[Path, typer.Argument(help="A run folder.", show_default=False)],
    weights: Annotated[
        bool, typer.Option("--weights", help="Print the learned parameters.")
    ] = False,
) -> None:
    """Summarise a run: config, model (with parameter counts), final and best metrics."""
    from nncli.trained.show import describe_run

    with user_errors():
        for item in describe_run(run, weights):
            print_item(item)


TABLE_ROWS = 50  # compare's terminal table; summary.csv and other formats have every run


def compare(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Run folders, or folders of run folders (one level down).",
            show_default=False,
            metavar="RUN...",
        ),
    ],
    sort: Annotated[
        str | None,
        typer.Option(
            "--sort",
            help="Best first by a metric's best value: a column (val_accuracy) or a bare "
            "metric (accuracy: its val, else test split); runs without it go last. "
            "A config key (optimizer.lr) sorts ascending.",
            metavar="METRIC",
        ),
    ] = None,
    top: Annotated[
        int | None,
        typer.Option(
            "--top",
            min=1,
            metavar="N",
            help="Keep the N best (by --sort, else by the monitored loss).",
        ),
    ] = None,
    metric: Annotated[
        list[str] | None,
        typer.Option(
            "--metric",
            "-m",
            help="Metric columns to show: test_accuracy, or accuracy for every split "
            "(repeatable or comma list; default: all).",
            metavar="NAME",
        ),
    ] = None,
    fmt: FormatOption = Format.table,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            metavar="DIR",
            help="New or empty folder for summary.csv and the figures "
            "[default: comparisons/<time>_<id> beside the runs folder]",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Compare runs: config keys that differ, final and best metrics, overlay figures.

    \b
    Columns: run, status, epochs (done), params, duration_s; one per config key that
    differs (dotted, list items by index: model.layers.0.units; blank where a run lacks
    it); then for each metric column of metrics.csv (e.g. test_accuracy):
      test_accuracy              its value in the last epoch
      test_accuracy best         its best value (min for losses, max otherwise)
      test_accuracy best epoch   the first epoch that reached it
    Runs with different metric columns show the union, blank where missing.

    Keys equal in every run are printed once above the table; with --format json the
    output is {"same": {...}, "runs": [...]}. summary.csv and one figure per metric
    (a colour per run; train dashed, held-out solid) go to the --out folder, whose path
    is printed on stderr at the end. Failed, interrupted or running runs are shown with
    their status ("(diverged)" added when the last loss is not finite); unreadable
    runs and paths that are not runs are left out with a warning. Exit code 2 when
    no run is usable. The terminal table shows the first 50 runs unless --top is
    given; summary.csv and the other formats have them all.
    """
    from rich.markup import escape

    from nncli.runs import compare as comparing

    names = [n.strip() for item in metric or [] for n in item.split(",") if n.strip()]
    with user_errors():
        result = comparing.compare(paths, sort=sort, top=top, metrics=names)
        for warning in result.warnings:
            err.print(f"[yellow]warning[/yellow] {escape(warning)}", markup=True, soft_wrap=True)
        folder = comparing.out_dir(out_dir, result.runs[0].path)
        comparing.write_outputs(result, folder)
    if fmt is Format.json:
        sys.stdout.write(result.json() + "\n")
    else:
        if fmt is Format.table and result.same:
            same = ", ".join(f"{k}={comparing.text(v)}" for k, v in result.same.items())
            out.print(f"same in all runs: {same}", soft_wrap=True, markup=False)
        rows = result.text_rows()
        # a terminal table of hundreds of runs is unreadable and slow to lay out
        shown = rows[:TABLE_ROWS] if fmt is Format.table and top is None else rows
        rendered = render(shown, result.columns, fmt, title="runs")
        print_item(rendered)
        folded = fmt is Format.table and out.is_terminal and natural_width(rendered) > out.width
        if folded and result.metric_columns:
            out.print(
                "the table is folded to fit the terminal; show fewer columns with --metric "
                f"(e.g. --metric {result.metric_columns[-1]}) or all with --format csv",
                soft_wrap=True,
                markup=False,
            )
        if len(shown) < len(rows):
            out.print(
                f"showing {len(shown)} of {len(rows)} runs; all are in {folder}/summary.csv "
                "(or use --top N, --format csv)",
                soft_wrap=True,
                markup=False,
            )
    err.print(f"summary and figures: {folder}", soft_wrap=True, markup=False)


def runs(
    folder: Annotated[Path, typer.Argument(help="Folder of runs.", metavar="DIR")] = Path("runs"),
    status: Annotated[
        list[str] | None,
        typer.Option(
            "--status",
            metavar="STATUS",
            help="Only runs with this status, e.g. running or failed,interrupted "
            "(repeatable or comma list; unreadable: run.json cannot be read).",
        ),
    ] = None,
    fmt: FormatOption = Format.table,
) -> None:
    """List runs newest first: status, start, epochs done, duration and the headline metric.

    The headline is the monitored column (by default the val loss, else the train loss:
    the one that picks checkpoints/best.pt) with its best value and epoch.
    """
    from nncli.runs.listing import RUNS_COLUMNS, list_runs

    with user_errors():
        rows = list_runs(folder, status)
    if not rows:
        which = f" with status {', '.join(status)}" if status else ""
        message = f"no runs{which} in {folder}; train one with: nncli train EXPERIMENT.yaml"
        if fmt is Format.table:
            out.print(message, soft_wrap=True, markup=False)
            return
        err.print(message, soft_wrap=True, markup=False)
    print_item(render(rows, list(RUNS_COLUMNS), fmt, title=str(folder)))
