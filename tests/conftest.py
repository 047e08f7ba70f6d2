"""Shared fixtures: a CLI runner and small experiment files written on the fly."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from nncli.cli.app import app

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS = ROOT / "experiments"

TINY = """\
name: tiny
seed: 7
data:
  source: circles
  n_samples: 200
  noise: 0.05
  split: {val: 0.2, test: 0.2}
model:
  layers:
    - dense: 8
    - tanh
    - dense: 1
    - sigmoid
loss: bce
optimizer: {name: adam, lr: 0.05}
train: {epochs: 3, batch_size: 32, device: cpu}
metrics: [accuracy, f1]
"""


class Rows:
    """A training sink (nncli.engine.fit.Sink) that keeps each epoch's row in memory."""

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []

    def epoch_end(self, row: Mapping[str, float], state: Any, last: bool, best: bool) -> None:
        self.rows.append(dict(row))

    def batch_end(self, epoch: int, batch: int, n_batches: int, loss: Any) -> None:
        pass

    def note(self, text: str) -> None:
        raise AssertionError(text)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def write(tmp_path: Path) -> Callable[..., Path]:
    """write(text, name="exp.yaml") -> path of a new file under tmp_path."""

    def _write(text: str, name: str = "exp.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return _write


@pytest.fixture
def tiny(write: Callable[..., Path]) -> Path:
    return write(TINY, "tiny.yaml")


def interrupted_run(
    runner: CliRunner, spec: Path, runs_dir: Path, monkeypatch: pytest.MonkeyPatch, at: int = 1
) -> Path:
    """The folder of a run of `spec` stopped by Ctrl-C after epoch `at` (in-process)."""
    import nncli.loggers.run_folder

    original = nncli.loggers.run_folder.RunFolderLogger.epoch

    def epoch_end(
        self: nncli.loggers.run_folder.RunFolderLogger,
        row: dict[str, float],
        *args: object,
        **kw: object,
    ) -> None:
        original(self, row, *args, **kw)  # type: ignore[arg-type]
        if row["epoch"] == at:
            raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(nncli.loggers.run_folder.RunFolderLogger, "epoch", epoch_end)
        result = runner.invoke(app, ["train", str(spec), "--runs-dir", str(runs_dir), "-q"])
    assert result.exit_code == 130, result.output
    (folder,) = runs_dir.iterdir()
    return folder
