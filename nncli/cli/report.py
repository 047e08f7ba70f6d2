"""`nncli report`: one self-contained HTML page for a run or several."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nncli.cli.common import out, user_errors


def report(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Run folders, folders of run folders, or sweep folders.",
            show_default=False,
            metavar="RUN...",
        ),
    ],
    out_file: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            metavar="FILE",
            help="Where to write the page (a folder: report.html in it). An existing file "
            "is replaced only if it is a report nncli wrote.",
        ),
    ] = Path("report.html"),
) -> None:
    """Write one HTML page of runs that opens anywhere, offline: no server, no network.

    \b
    One run: its status, final and best metrics, figures, model (each layer's output
    shape and parameters), every epoch's metrics and its config as written and
    resolved: the page every run writes as RUN/report.html when it ends.
    Several runs (a sweep folder gives its runs): compare's table, the config keys that
    differ and those that do not, and an overlay figure per metric.
    Tables sort by a click on a column; a number shows its exact value on hover.
    Prints the page's path. Exit code 2, naming the file, where a run is damaged.
    """
    from nncli.report.several import write_report

    with user_errors():
        written = write_report(paths, out_file)
    out.print(str(written), soft_wrap=True, markup=False)
