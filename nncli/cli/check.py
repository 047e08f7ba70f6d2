"""`nncli validate`, `nncli list` and `nncli schema`: the experiment file and the
registries, without training."""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from nncli.cli.common import (
    FormatOption,
    SetOption,
    out,
    print_item,
    user_errors,
    warn_lint,
)
from nncli.tables import Format, render


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
    from nncli.config.spec import load_experiment

    failed = 0
    for file in files:
        try:
            with user_errors():
                exp = load_experiment(file, set_ or [])
                warn_lint(exp)
                spec = exp.spec
                detail = ""
                if build:
                    from nncli.engine.prepare import prepare

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


class Listing(str, Enum):
    layers = "layers"
    losses = "losses"
    optimizers = "optimizers"
    datasets = "datasets"
    metrics = "metrics"


def list_(
    kind: Annotated[Listing, typer.Argument(help="What to list.")],
    fmt: FormatOption = Format.table,
) -> None:
    """List the registered layers, losses, optimizers, datasets or metrics, with parameters."""
    from nncli.catalogue import catalogue

    rows = catalogue(kind.value)
    print_item(render(rows, list(rows[0]), fmt, title=kind.value))


def schema(
    out_file: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write to a file instead of stdout.")
    ] = None,
) -> None:
    """Print the JSON Schema of experiment files (for editor completion and checking)."""
    from nncli.config.spec import schema as make_schema
    from nncli.runs.files import write_atomic

    text = json.dumps(make_schema(), indent=2)
    if out_file is None:
        sys.stdout.write(text + "\n")
        return
    with user_errors():
        write_atomic(out_file, text + "\n")  # a full disk keeps the old file, exit 2
    out.print(f"wrote {out_file}", soft_wrap=True, markup=False)
