"""`nncli show`, `nncli compare` and `nncli runs`: run folders read back and side by side."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from nncli.cli.common import (
    FormatOption,
    Report,
    ReportOption,
    RunArgument,
    err,
    natural_width,
    out,
    print_item,
    user_errors,
)
from nncli.tables import Format, render


def show(
    run: RunArgument,
    weights: Annotated[
        bool, typer.Option("--weights", help="Print the learned parameters.")
    ] = False,
    report: ReportOption = Report.text,
) -> None:
    """Summarise a run: config, model (with parameter counts), final and best metrics.

    RUN may be an experiment file: its model, built on its data as training would, untrained.
    --format json prints the same facts as one JSON object, and nothing else, on stdout."""
    from nncli.trained.show import as_json, describe

    with user_errors():
        if report is Report.json:
            text = as_json(run, weights)  # read whole first: an error prints no half object
            sys.stdout.write(text + "\n")
            return
        for item in describe(run, weights):
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
            help="Write summary.csv and the figures to this new or empty folder "
            "[default: write nothing]",
            show_default=False,
        ),
    ] = None,
    smoke: Annotated[
        bool,
        typer.Option("--smoke", help="Include runs trained with --smoke (left out by default)."),
    ] = False,
) -> None:
    """Compare runs: config keys that differ, final and best metrics, overlay figures.

    \b
    Columns: run, status, epochs (done), params, duration_s; one per config key that
    differs (dotted, list items by index: model.layers.0.units; blank where a run lacks
    it). Where the layer stacks differ in shape, a model column holds each one in a word
    (dense16-relu-dense1-sigmoid) and the table and markdown leave out the per-layer
    keys (csv and json keep them). Then for each metric column of metrics.csv:
      test_accuracy              its value in the last epoch
      test_accuracy best         its best value (min for losses, max otherwise)
      test_accuracy best epoch   the first epoch that reached it
    Runs with different metric columns show the union, blank where missing.

    Keys equal in every run are printed once above the table; with --format json the
    output is {"same": {...}, "runs": [...]}. Nothing is written unless --out is given:
    then summary.csv and one figure per metric (a colour per run; train dashed, held-out
    solid) go to that folder, whose path is printed on stderr at the end. Failed,
    interrupted, running and killed runs (running, but their process is gone: nncli
    resume continues them) are shown with their status ("(diverged)" added when the last
    loss is not finite); --smoke runs, unreadable runs and paths that are not runs are
    left out with a warning. Exit code 2 when no run is usable. The terminal table shows
    the first 50 runs unless --top is given; the other formats have them all.
    """
    from rich.markup import escape

    from nncli.runs import compare as comparing

    names = [n.strip() for item in metric or [] for n in item.split(",") if n.strip()]
    with user_errors():
        result = comparing.compare(paths, sort=sort, top=top, metrics=names, smoke=smoke)
        for warning in result.warnings:
            err.print(f"[yellow]warning[/yellow] {escape(warning)}", markup=True, soft_wrap=True)
        folder = None if out_dir is None else comparing.out_dir(out_dir)
        if folder is not None:
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
        # csv is summary.csv: every differing key; a table and markdown are read by people
        columns = result.columns if fmt is Format.csv else result.table_columns
        rendered = render(shown, columns, fmt, title="runs")
        print_item(rendered)
        folded = fmt is Format.table and out.is_terminal and natural_width(rendered) > out.width
        if folded:
            # --metric given: fewer columns is what was asked for already
            hint = (
                "show fewer columns with --metric "
                f"(e.g. --metric {result.metric_columns[-1]}) or all with --format csv"
                if result.metric_columns and not names
                else "see it whole with --format csv"
            )
            out.print(
                f"the table is folded to fit the terminal; {hint}", soft_wrap=True, markup=False
            )
        if len(shown) < len(rows):
            where = f"all are in {folder}/summary.csv; " if folder is not None else ""
            out.print(
                f"showing {len(shown)} of {len(rows)} runs; {where}see them all with "
                "--format csv (or keep the best with --top N)",
                soft_wrap=True,
                markup=False,
            )
    if folder is not None:
        err.print(f"summary and figures: {folder}", soft_wrap=True, markup=False)


def runs(
    folder: Annotated[Path, typer.Argument(help="Folder of runs.", metavar="DIR")] = Path("runs"),
    status: Annotated[
        list[str] | None,
        typer.Option(
            "--status",
            metavar="STATUS",
            help="Only runs with this status, e.g. running or failed,killed "
            "(repeatable or comma list; unreadable: run.json cannot be read).",
        ),
    ] = None,
    fmt: FormatOption = Format.table,
) -> None:
    """List runs newest first: status, start, epochs done, duration and the headline metrics.

    \b
    monitor, best, best epoch   the monitored column (by default the val loss, else
                                the train loss: the one that picks checkpoints/best.pt)
                                and its best
    metric, metric best         the monitored split's first metric (test_accuracy...)
    Status is run.json's (running, completed, failed, interrupted, diverged), or killed:
    run.json says running but the process that trained it is gone (killed, or the
    machine stopped); `nncli resume RUN` continues it. "(smoke)" marks a --smoke run.
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
