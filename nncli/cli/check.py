"""`nncli validate`, `nncli list` and `nncli schema`: the experiment file and the
registries, without training."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from nncli.cli.common import (
    FormatOption,
    SetOption,
    out,
    print_item,
    say,
    user_errors,
)
from nncli.errors import NncliError, Problem, SpecError
from nncli.tables import Format, render


class Report(str, Enum):
    """How validate reports: lines for people, JSON for programs, GitHub annotations for CI."""

    text = "text"
    json = "json"
    github = "github"


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
    report: Annotated[
        Report,
        typer.Option(
            "--format",
            "-f",
            help="text; json (a list of files with their errors and warnings); github "
            "(::error and ::warning annotations, which GitHub Actions shows on the lines).",
        ),
    ] = Report.text,
) -> None:
    """Check experiment files without training; every problem of every file is listed.

    Exit code 2 when any file has an error (warnings alone leave it 0).
    """
    checked = [_check(file, set_ or [], build) for file in files]
    if report is Report.json:
        sys.stdout.write(json.dumps([c.as_json() for c in checked], indent=2) + "\n")
    elif report is Report.github:
        for c in checked:
            for level, problem in [("error", p) for p in c.errors] + [
                ("warning", p) for p in c.warnings
            ]:
                sys.stdout.write(_annotation(level, c.file, problem) + "\n")
    else:
        for c in checked:
            for problem in c.warnings:
                say("warning", "yellow", str(problem))
            for problem in c.errors:  # an error of the file as a whole reads as it was raised
                whole = not problem.key and problem.where == str(c.file)
                say("error", "red", problem.message if whole else str(problem))
            if not c.errors:
                out.print(f"[green]ok[/green] {escape(f'{c.file}: {c.summary}')}", soft_wrap=True)
    if any(c.errors for c in checked):
        raise typer.Exit(2)


@dataclass
class _Checked:
    file: Path
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    summary: str = ""

    def as_json(self) -> dict[str, object]:
        return {
            "file": str(self.file),
            "ok": not self.errors,
            "summary": self.summary or None,
            "errors": [asdict(p) for p in self.errors],
            "warnings": [asdict(p) for p in self.warnings],
        }


def _check(file: Path, overrides: list[str], build: bool) -> _Checked:
    """One file's errors (validation; its data files, columns and outputs against the
    targets; with --build the model's) and lint warnings."""
    from nncli.config.lint import check_experiment
    from nncli.config.locate import located
    from nncli.config.spec import load_experiment
    from nncli.engine.precheck import precheck

    checked = _Checked(file)
    try:
        exp = load_experiment(file, overrides)
    except SpecError as exc:
        checked.errors = exc.problems
        return checked
    except NncliError as exc:
        checked.errors = [Problem(str(file), "", str(exc))]
        return checked
    checked.warnings = check_experiment(exp)
    spec = exp.spec
    detail = ""
    try:
        errors = precheck(spec)
        if build and not errors:
            from nncli.engine.prepare import prepare

            p = prepare(
                spec.model_copy(update={"train": spec.train.model_copy(update={"device": "cpu"})})
            )
            detail = f", {p.task.kind}, {p.n_params:,} parameters"
    except NncliError as exc:
        errors = [exc]
    if errors:
        checked.errors = [located(e, exp) or Problem(str(file), "", str(e)) for e in errors]
        return checked
    checked.summary = (
        f"{len(spec.model.layers)} layers, loss {spec.loss.name}, data {spec.data.source}{detail}"
    )
    return checked


def _annotation(level: str, file: Path, problem: Problem) -> str:
    """A GitHub Actions workflow command: `::error file=F,line=L,col=C,title=KEY::MESSAGE`."""
    place = {"file": str(file)}
    head, _, col = problem.where.rpartition(":")
    name, _, line = head.rpartition(":")
    if line.isdigit() and col.isdigit():
        place = {"file": name, "line": line, "col": col}
    if problem.key:
        place["title"] = problem.key
    props = ",".join(f"{k}={_escape(v, True)}" for k, v in place.items())
    text = problem.message + (f" ({problem.hint})" if problem.hint else "")
    if not problem.where.startswith(str(file)):
        text = f"{problem.where}: {text}"  # e.g. a --set option
    return f"::{level} {props}::{_escape(text, False)}"


def _escape(text: str, prop: bool) -> str:
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return text.replace(":", "%3A").replace(",", "%2C") if prop else text


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
