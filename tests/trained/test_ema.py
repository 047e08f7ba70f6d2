"""A run trained with train.ema_decay is used with the averaged weights that scored it:
eval on its test split repeats run.json's final test scores."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import TINY, info
from typer.testing import CliRunner

from nncli.cli.app import app


def test_eval_of_an_ema_run_repeats_its_final_scores(
    runner: CliRunner, write: Callable[..., Path], tmp_path: Path
) -> None:
    spec = write(TINY.replace("device: cpu}", "device: cpu, ema_decay: 0.9}"), "ema.yaml")
    trained = runner.invoke(app, ["train", str(spec), "--runs-dir", str(tmp_path / "runs"), "-q"])
    assert trained.exit_code == 0, trained.output
    folder = Path(trained.stdout.strip().splitlines()[-1])
    final = info(folder)["final"]
    assert isinstance(final, dict)
    result = runner.invoke(app, ["eval", str(folder), "--split", "test", "--format", "json"])
    assert result.exit_code == 0, result.output
    scores = {row["metric"]: row["value"] for row in json.loads(result.stdout)}
    assert scores["loss"] == pytest.approx(final["test_loss"], rel=1e-5)
    assert scores["accuracy"] == pytest.approx(final["test_accuracy"], rel=1e-6)
