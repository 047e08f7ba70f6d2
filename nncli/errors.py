"""The one exception family nncli raises for problems a user can fix, and their exit codes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143
EXIT_DIVERGED = 3
EXIT_PRUNED = 4


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type's name when it says nothing."""
    message = str(exc).strip()
    return message.splitlines()[0] if message else type(exc).__name__


def printable(text: str) -> str:
    """`text` with what a terminal would drop or cannot encode (control characters, lone
    surrogates) written as escapes, so a message shows the value it is about: `'bce\\x07'`,
    not `'bce'`. Line breaks and tabs stay."""
    return "".join(
        c if c.isprintable() or c in "\n\t" else c.encode("unicode_escape").decode("ascii")
        for c in text
    )


class NncliError(Exception):
    """A mistake in the user's input: the CLI prints the message and exits with 2.

    `key` is the dotted key of the experiment file the mistake is at (`data.target`,
    `model.layers.3`), where the message does not start with it; the CLI then names the
    file, line and column of that key (`config.locate.located`)."""

    exit_code = EXIT_USAGE
    key: str | None = None

    def __init__(self, *args: object, key: str | None = None) -> None:
        super().__init__(*args)
        if key is not None:
            self.key = key


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an experiment file, at a place in it."""

    where: str  # "FILE:LINE:COL" or "--set KEY"
    key: str  # dotted path, e.g. "model.layers.2.units"
    message: str
    hint: str | None = None

    def __str__(self) -> str:
        text = f"{self.where}  {self.key or '<top>'}  {self.message}"
        return f"{text}  ({self.hint})" if self.hint else text


class SpecError(NncliError):
    """Every problem found in one experiment file, reported at once."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class RunInterrupted(BaseException):
    """Raised inside training when the user presses Ctrl-C or the process gets SIGTERM;
    `folder` is the run folder it marked interrupted, once one is. Not an Exception, like
    KeyboardInterrupt: the signal lands wherever the main thread is, and a handler of
    `except Exception` there (a logger's, torch's own around an optional import) must not
    swallow it and train on."""

    def __init__(self, exit_code: int = EXIT_INTERRUPTED, folder: Path | None = None) -> None:
        self.exit_code, self.folder = exit_code, folder
        super().__init__("interrupted")


class RunDiverged(Exception):
    """The loss, or the weights, became NaN or infinite: the run stops and is marked
    diverged."""

    exit_code = EXIT_DIVERGED

    def __init__(
        self, epoch: int, batch: int, n_batches: int, lr: float, weights: bool = False
    ) -> None:
        self.epoch, self.batch = epoch, batch
        what = (
            f"the weights or the optimizer's state became non-finite in epoch {epoch}"
            if weights
            else f"the training loss became non-finite in epoch {epoch}, batch {batch} of {n_batches}"
        )
        super().__init__(
            f"{what}; "
            f"the run stopped and keeps its last finite checkpoint. Try a lower learning rate "
            f"(it was {lr:g}), gradient clipping (train.clip_grad_norm: 1.0), or check the data "
            "for NaN or huge values"
        )


class RunPruned(BaseException):
    """A sweep's pruner stopped the run early (a poor trial): it is marked pruned. Not an
    Exception, like KeyboardInterrupt: a request to stop, which a logger's own failure
    handling (`except Exception`) must let through."""

    exit_code = EXIT_PRUNED
