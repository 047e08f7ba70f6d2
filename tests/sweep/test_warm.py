"""How a warm sweep starts its trials (nncli/sweep/warm.py): the fork server is started
before the sweep checks its trials, so that its imports run beside that work, and the
sweep starts the next trial as soon as a forked one ends."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest
from conftest import TINY
from typer.testing import CliRunner

from nncli.cli.app import app
from nncli.errors import NncliError
from nncli.sweep import plan, warm


def _calls(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *args: str
) -> list[str]:
    """What `nncli sweep FILE ARGS` calls, in order, up to checking the trials (stopped
    there by a planted input error)."""
    calls: list[str] = []

    def planned(*_: object) -> None:
        calls.append("plan")
        raise NncliError("stop here")

    monkeypatch.setattr(warm, "prewarm", lambda modules: calls.append(f"prewarm {modules}"))
    monkeypatch.setattr(plan, "plan", planned)
    file = tmp_path / "exp.yaml"
    file.write_text(TINY)
    result = runner.invoke(app, ["sweep", str(file), "--grid", "optimizer.lr=0.1,0.2", *args])
    assert result.exit_code == 2 and "stop here" in result.output
    return calls


def test_the_fork_server_starts_before_the_trials_are_checked(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _calls(runner, tmp_path, monkeypatch) == ["prewarm []", "plan"]
    digits = ["--set", "data.source=digits"]
    assert _calls(runner, tmp_path, monkeypatch, *digits) == [
        "prewarm ['sklearn.datasets']",
        "plan",
    ]


@pytest.mark.parametrize("args", [["--start", "process"], ["--dry-run"], ["--nproc-per-node", "2"]])
def test_no_fork_server_where_no_trial_is_forked(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    assert _calls(runner, tmp_path, monkeypatch, *args) == ["plan"]


def test_waiting_ends_when_a_forked_trial_ends() -> None:
    child = multiprocessing.get_context("fork").Process(target=time.sleep, args=(0.2,))
    child.start()
    began = time.monotonic()
    warm.wait_any([warm._Forked(child)], timeout=60)
    waited = time.monotonic() - began
    child.join(5)
    assert child.exitcode == 0 and 0.1 < waited < 30  # its end, not the timeout


@pytest.mark.parametrize(
    ("lines", "sets", "expected"),
    [
        ("data: {source: circles}", [], []),
        ("data: {source: digits}", [], ["sklearn.datasets"]),
        ("data: {source: timeseries, path: t.csv, target: y}", [], ["pandas"]),
        ("data: {source: circles}", ["data.source=iris"], ["sklearn.datasets"]),
        (
            "data: {source: digits, augment: [horizontal_flip, {rotation: 10}]}\n"
            "loggers: [{mlflow: {tracking_uri: x}}, tensorboard]",
            [],
            ["kornia.augmentation", "mlflow", "sklearn.datasets", "torch.utils.tensorboard"],
        ),
        ("data: {source: digitz}\nloggers: [nope, 3]", [], []),  # the sweep's check says why
        ("data: [", [], []),
    ],
)
def test_the_fork_server_imports_what_the_file_names(
    tmp_path: Path, lines: str, sets: list[str], expected: list[str]
) -> None:
    file = tmp_path / "exp.yaml"
    file.write_text(lines + "\n")
    assert warm.trial_imports(file, sets) == expected
    assert warm.trial_imports(tmp_path / "absent.yaml", []) == []
