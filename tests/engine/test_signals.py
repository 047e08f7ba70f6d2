"""Ctrl-C and SIGTERM in-process, where they land late or twice: in the report written
after a run ended, in a finalizer during the last evaluation, in a deferred block that
fails, and what a stopped run leaves behind for the next one in the same process."""

from __future__ import annotations

import errno
import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import interrupted_run
from typer.testing import CliRunner

from nncli.cli.app import app

# three epochs of moons: an epoch takes milliseconds
SMALL = """\
name: small
seed: 7
data: {source: moons, n_samples: 200, noise: 0.05, split: {val: 0.2, test: 0.2}}
model:
  layers: [dense: 8, tanh, dense: 1, sigmoid]
loss: bce
optimizer: {name: adam, lr: 0.05}
train: {epochs: 3, batch_size: 32, device: cpu}
metrics: [accuracy]
"""


def info(folder: Path) -> dict[str, Any]:
    return dict(json.loads((folder / "run.json").read_text(encoding="utf-8")))


def ctrl_c_here() -> None:
    """The user presses Ctrl-C now; training's handler raises it before the sleep ends."""
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(5)


# the first full-batch step makes the weights infinite: the run ends diverged in epoch 1
DIVERGING = """\
seed: 3
data: {source: linear, n_samples: 32, weights: [0.5], split: {test: 0.25}}
model: {layers: [dense: 1, sigmoid]}
loss: mse
optimizer: {name: sgd, lr: 1.0e39}
train: {epochs: 6, batch_size: 24, device: cpu}
"""


@pytest.mark.parametrize(
    ("text", "status", "code", "said"),
    [(SMALL, "completed", 0, []), (DIVERGING, "diverged", 3, ["diverged"])],
    ids=["completed", "diverged"],
)
def test_a_ctrl_c_while_the_report_is_written_is_a_warning_not_an_interrupted_run(
    runner: CliRunner,
    write: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    text: str,
    status: str,
    code: int,
    said: list[str],
) -> None:
    # report.html is written once run.json says how the run ended; a Ctrl-C there left the
    # run as it ended while RunInterrupted was an Exception. Since it is not, the run was
    # marked interrupted over its status, and exited 130
    import nncli.report.run

    def slow(folder: Path) -> Path:
        ctrl_c_here()
        raise AssertionError("not reached")

    monkeypatch.setattr(nncli.report.run, "write_run_report", slow)
    runs = tmp_path / "runs"
    result = runner.invoke(app, ["train", str(write(text)), "--runs-dir", str(runs), "-q"])
    assert result.exit_code == code, result.output
    (folder,) = runs.iterdir()
    assert result.stdout.splitlines()[-1] == str(folder)
    warning = f"warning {folder}/report.html was not written: interrupted"
    first, *then = result.stderr.splitlines()
    assert first == warning
    assert [line.split()[0] for line in then] == said  # and the run's own end, as ever
    assert info(folder)["status"] == status
    assert not (folder / "report.html").exists()


class Finalized:
    """An object whose finalizer takes a Ctrl-C, as a DataLoader iterator's does while it
    ends its workers: Python prints what a __del__ raises and goes on."""

    def __del__(self) -> None:
        ctrl_c_here()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # as Python does
@pytest.mark.parametrize("at", [5, 6], ids=["val", "test"])
def test_a_ctrl_c_swallowed_in_the_last_epochs_evaluation_stops_the_run(
    runner: CliRunner,
    write: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    at: int,
) -> None:
    # fit raised a swallowed Ctrl-C again at its next batch only: one swallowed while the
    # last epoch evaluated its held-out splits was lost, and the run completed (exit 0)
    from nncli.engine import fit

    original, calls, finished = fit.evaluate, [], []

    def evaluate(*args: Any) -> None:
        calls.append(1)
        original(*args)
        finished.append(1)
        if len(calls) == at:  # epoch 3 (the last) evaluates val (call 5), then test (6)
            Finalized()  # freed at once

    monkeypatch.setattr(fit, "evaluate", evaluate)
    runs = tmp_path / "runs"
    result = runner.invoke(app, ["train", str(write(SMALL)), "--runs-dir", str(runs), "-q"])
    assert result.exit_code == 130, result.output
    assert len(finished) == at  # val's Ctrl-C stops test's evaluation at its first chunk
    (folder,) = runs.iterdir()
    assert len((folder / "metrics.csv").read_text().splitlines()) == 3  # the header, 2 rows


def test_a_ctrl_c_held_by_a_block_that_failed_does_not_stop_the_next_run(
    runner: CliRunner, write: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a Ctrl-C while an epoch's row is written waits for the block's end; where the block
    # failed instead (a full disk), it stayed pending, and the next run in the process (a
    # test's, an API user's) stopped as it made its folder, though nobody pressed Ctrl-C
    from nncli.runs.folder import Run

    original = Run.log_epoch

    def full(self: Run, row: dict[str, float]) -> None:
        if row["epoch"] == 2:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.1)  # the handler runs, and holds it
            raise OSError(errno.ENOSPC, "No space left on device")
        original(self, row)

    spec, runs = write(SMALL), tmp_path / "runs"
    with monkeypatch.context() as patched:
        patched.setattr(Run, "log_epoch", full)
        result = runner.invoke(app, ["train", str(spec), "--runs-dir", str(runs), "-q"])
        assert result.exit_code == 2, result.output  # the write error, the run marked failed
    (failed,) = runs.iterdir()
    assert info(failed)["status"] == "failed"

    result = runner.invoke(app, ["train", str(spec), "--runs-dir", str(runs), "-q"])
    assert result.exit_code == 0, result.output
    (folder,) = set(runs.iterdir()) - {failed}
    assert (info(folder)["status"], info(folder)["epochs_done"]) == ("completed", 3)


@pytest.mark.parametrize("resuming", [False, True], ids=["train", "resume"])
def test_a_second_ctrl_c_while_the_run_is_marked_interrupted_still_marks_it(
    runner: CliRunner,
    write: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    resuming: bool,
) -> None:
    # the user presses Ctrl-C twice: the second lands while the first is handled, as the
    # run folder's logger waits for its last checkpoint to be written
    from nncli.loggers.run_folder import RunFolderLogger, Saver

    spec, runs = write(SMALL.replace("epochs: 3", "epochs: 4")), tmp_path / "runs"
    args = ["train", str(spec), "--runs-dir", str(runs)]
    if resuming:
        folder = interrupted_run(runner, spec, runs, monkeypatch, at=1)
        args = ["resume", str(folder)]
    logged, close = RunFolderLogger.epoch, Saver.close

    def epoch(self: RunFolderLogger, row: dict[str, float], *rest: Any) -> None:
        logged(self, row, *rest)
        if row["epoch"] == 2:
            ctrl_c_here()

    def closing(self: Saver) -> BaseException | None:
        ctrl_c_here()  # the second Ctrl-C
        return close(self)

    monkeypatch.setattr(RunFolderLogger, "epoch", epoch)
    monkeypatch.setattr(Saver, "close", closing)
    result = runner.invoke(app, [*args, "-q"])
    assert result.exit_code == 130, result.output
    (folder,) = runs.iterdir()
    assert (info(folder)["status"], info(folder)["epochs_done"]) == ("interrupted", 2)
    assert result.stderr == (
        f"interrupted: the run is marked interrupted; finished epochs are kept in {folder} "
        f"(continue it with: nncli resume {folder})\n"
    )
    assert result.stdout == f"{folder}\n"


def test_a_ctrl_c_while_the_summary_is_shown_says_the_run_ended_and_keeps_it(
    runner: CliRunner, write: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the run has ended and run.json says how: the message said "interrupted before a run
    # folder was made; nothing was written", of a completed run
    from nncli.loggers.console import ConsoleLogger

    def slow(self: ConsoleLogger, run: object) -> None:
        ctrl_c_here()

    monkeypatch.setattr(ConsoleLogger, "summary", slow)
    runs = tmp_path / "runs"
    result = runner.invoke(app, ["train", str(write(SMALL)), "--runs-dir", str(runs)])
    assert result.exit_code == 130, result.output
    (folder,) = runs.iterdir()
    assert result.stderr.splitlines()[-1] == (
        f"interrupted after the run ended (completed); it is kept in {folder}"
    )
    assert result.stdout.splitlines()[-1] == str(folder)
    assert info(folder)["status"] == "completed"
