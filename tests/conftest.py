"""Shared fixtures: a CLI runner and small experiment files written on the fly."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

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
    """A training sink (nncli.train.Sink) that keeps each epoch's row in memory."""

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
