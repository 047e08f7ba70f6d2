"""Nothing lost, nothing half-done: a resumed run's figures show every epoch."""

from __future__ import annotations

import csv
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from conftest import interrupted_run
from typer.testing import CliRunner

from nncli.cli.app import app

# moons with early stopping: the best val_loss is epoch 3, the run stops after epoch 6 and
# ends with epoch 3's weights (restore_best); an epoch takes milliseconds
EARLY = """\
name: early
seed: 7
data: {source: moons, n_samples: 200, noise: 0.05, split: {val: 0.2, test: 0.2}}
model:
  layers: [dense: 8, tanh, dense: 1, sigmoid]
loss: bce
optimizer: {name: adam, lr: 0.05}
train:
  epochs: 40
  batch_size: 32
  device: cpu
  monitor: val_loss
  early_stopping: {patience: 3, restore_best: true}
metrics: [accuracy]
"""
BEST, STOP = 3, 6


def rows_without_time(folder: Path) -> list[dict[str, str]]:
    with (folder / "metrics.csv").open() as f:
        return [{k: v for k, v in r.items() if k != "time_s"} for r in csv.DictReader(f)]


def test_a_resumed_runs_figures_show_every_epoch(
    runner: CliRunner, write: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = write(EARLY.replace("epochs: 40", "epochs: 4"), "early.yaml")
    folder = interrupted_run(runner, spec, tmp_path / "runs", monkeypatch, at=2)
    from nncli.engine import experiment

    drawn: list[list[float]] = []
    curves = experiment.plot_curves

    def spy(rows: list[Mapping[str, float]], *args: Any) -> list[Path]:
        drawn.append([row["train_loss"] for row in rows])
        return curves(rows, *args)

    monkeypatch.setattr(experiment, "plot_curves", spy)
    result = runner.invoke(app, ["resume", str(folder), "-q"])
    assert result.exit_code == 0, result.output
    assert drawn == [[float(r["train_loss"]) for r in rows_without_time(folder)]]
    assert len(drawn[0]) == 4
