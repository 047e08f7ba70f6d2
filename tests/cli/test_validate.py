"""`nncli validate --format text|json|github`: the same problems for people, programs and CI."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from conftest import EXPERIMENTS
from typer.testing import CliRunner

from nncli.cli.app import app

BROKEN = """\
data: circles
model:
  layers:
    - dense: 1
    - sigmoid
loss: bce_with_logits
optimizer: {name: adam, lr: -1}
"""


def test_json_lists_each_file_with_its_errors_and_warnings(
    runner: CliRunner, write: Callable[..., Path]
) -> None:
    broken = write(BROKEN, "broken.yaml")
    good = EXPERIMENTS / "circles.yaml"
    result = runner.invoke(app, ["validate", str(good), str(broken), "--format", "json"])
    assert result.exit_code == 2
    first, second = json.loads(result.stdout)
    assert first["file"] == str(good) and first["ok"] is True and first["errors"] == []
    assert first["summary"] == "4 layers, loss bce, data circles"
    assert second["ok"] is False and second["summary"] is None
    assert second["errors"] == [
        {
            "where": f"{broken}:7:25",
            "key": "optimizer.lr",
            "message": "Input should be greater than 0, got -1",
            "hint": None,
        }
    ]


def test_github_annotations_point_at_the_line(
    runner: CliRunner, write: Callable[..., Path]
) -> None:
    broken = write(BROKEN, "broken.yaml")
    result = runner.invoke(
        app, ["validate", str(broken), "--format", "github", "--set", "train.epochs=x"]
    )
    assert result.exit_code == 2
    assert result.stdout.splitlines() == [
        f"::error file={broken},line=7,col=25,title=optimizer.lr::"
        "Input should be greater than 0, got -1",
        f"::error file={broken},title=train.epochs::"
        "--set train.epochs=x: Input should be a valid integer, got 'x'",
    ]


def test_github_warnings_for_a_file_that_validates(
    runner: CliRunner, write: Callable[..., Path]
) -> None:
    fixed = write(BROKEN.replace("lr: -1", "lr: 0.1"), "warned.yaml")
    result = runner.invoke(app, ["validate", str(fixed), "-f", "github"])
    assert result.exit_code == 0, result.output
    (line,) = result.stdout.splitlines()
    assert line.startswith(f"::warning file={fixed},line=5,col=7,title=model.layers.1::sigmoid ")


def test_text_stays_as_it_was(runner: CliRunner, write: Callable[..., Path]) -> None:
    broken = write(BROKEN, "broken.yaml")
    result = runner.invoke(app, ["validate", str(EXPERIMENTS / "circles.yaml"), str(broken)])
    assert result.exit_code == 2
    assert result.stdout == f"ok {EXPERIMENTS / 'circles.yaml'}: 4 layers, loss bce, data circles\n"
    assert result.stderr == (
        f"error {broken}:7:25  optimizer.lr  Input should be greater than 0, got -1\n"
    )
