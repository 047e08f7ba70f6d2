"""What every command shares: the consoles, the options, the error-to-exit mapping and
how tables are printed."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from nncli.cli import complete
from nncli.errors import NncliError, SpecError, printable
from nncli.tables import Format

if TYPE_CHECKING:
    from rich.console import RenderableType

    from nncli.config.spec import Experiment

out = Console(highlight=False)


err = Console(stderr=True, highlight=False)


SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        "-s",
        help="Override a key: --set optimizer.lr=0.01 (repeatable).",
        metavar="KEY=VALUE",
        autocompletion=complete.set_keys,
    ),
]
RunArgument = Annotated[
    Path,
    typer.Argument(help="A run folder.", show_default=False, autocompletion=complete.run_folders),
]


QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="Print only the run folder.")]


FormatOption = Annotated[Format, typer.Option("--format", "-f", help="Output format.")]


class Report(str, Enum):
    """What a command that prints a report, not a table, writes: text for people, or one
    JSON document on stdout for programs."""

    text = "text"
    json = "json"


ReportOption = Annotated[
    Report,
    typer.Option("--format", "-f", help="text; json (one JSON object on stdout, nothing else)."),
]


def say(label: str, colour: str, text: str) -> None:
    """`label text` on stderr with the label coloured; the text is escaped (Rich would read
    `nncli[optuna]` or `[key]` as markup)."""
    from rich.markup import escape

    err.print(
        f"[{colour}]{label}[/{colour}] {escape(printable(text))}", markup=True, soft_wrap=True
    )


@contextmanager
def user_errors(exp: Experiment | None = None) -> Iterator[None]:
    """NncliError -> its message in red on stderr and exit code 2; no traceback. An error
    about a key of `exp` (the experiment file being trained) reads as validate prints it:
    `FILE:LINE:COL  key  message`.

    Messages are escaped: Rich would read `nncli[optuna]` or `[key]` as markup, drop control
    characters and fail on a lone surrogate.
    """

    try:
        yield
    except SpecError as exc:
        for problem in exc.problems:
            say("error", "red", str(problem))
        raise typer.Exit(exc.exit_code) from None
    except NncliError as exc:
        from nncli.config.locate import located

        at = located(exc, exp) if exp is not None else None
        say("error", "red", str(at or exc))
        raise typer.Exit(exc.exit_code) from None


def print_item(item: RenderableType) -> None:
    """Text as it is; a table folded to the terminal's width, or at its full width where
    stdout is a file or a pipe (no screen to fit; a folded table would not read there)."""
    if isinstance(item, str):
        out.print(item, soft_wrap=True, markup=False)
    elif out.is_terminal:
        out.print(item)
    else:  # (print's own width= is capped at the console's)
        wide = Console(file=out.file, width=max(out.width, natural_width(item)), highlight=False)
        wide.print(item)


def natural_width(item: RenderableType) -> int:
    """The width a table takes when nothing is folded."""
    return out.measure(item, options=out.options.update_width(10_000)).maximum


def warn_lint(exp: Experiment) -> None:
    """The file's activation/loss guards in yellow on stderr; the exit code stays as it is."""

    from nncli.config.lint import check_experiment

    for problem in check_experiment(exp):
        say("warning", "yellow", str(problem))


class CheckpointChoice(str, Enum):
    best = "best"
    last = "last"


CheckpointOption = Annotated[
    CheckpointChoice,
    typer.Option("--checkpoint", help="Weights to use: best.pt (the monitored best) or last.pt."),
]
