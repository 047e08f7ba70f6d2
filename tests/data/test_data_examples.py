"""The real-data examples in experiments/ reach the figures their comments state."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import EXPERIMENTS
from typer.testing import CliRunner

from nncli.cli.app import app

FIGURES = {  # experiment: (metric in run.json's final row, the least it must reach)
    "digits_mlp": ("test_accuracy", 0.95),
    "digits_lenet": ("test_accuracy", 0.95),
    "iris": ("test_accuracy", 0.85),
    "breast_cancer": ("test_accuracy", 0.95),
    "diabetes": ("test_r2", 0.4),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(FIGURES))
def test_example_reaches_its_figure(name: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["train", str(EXPERIMENTS / f"{name}.yaml"), "--runs-dir", str(tmp_path), "-q"],
    )
    assert result.exit_code == 0, result.output
    info = json.loads((Path(result.stdout.strip()) / "run.json").read_text())
    metric, least = FIGURES[name]
    assert info["final"][metric] >= least, info["final"]


def test_mnist_example_is_documented() -> None:
    text = (EXPERIMENTS / "mnist_mlp.yaml").read_text()
    assert "t10k-images-idx3-ubyte.gz" in text
    assert "folder: ../data/mnist" in text
