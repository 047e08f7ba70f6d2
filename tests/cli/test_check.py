"""`nncli validate`, `list` and `schema`: the commands that check and describe, and
train nothing."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

from conftest import TINY
from typer.testing import CliRunner

from nncli.cli.app import app


def test_validate_reports_every_file(
    runner: CliRunner, tiny: Path, write: Callable[..., Path]
) -> None:
    bad = write(TINY.replace("- tanh", "- tnah"), "bad.yaml")
    result = runner.invoke(app, ["validate", str(tiny), str(bad)])
    assert result.exit_code == 2
    assert f"ok {tiny}: 4 layers, loss bce, data circles" in result.stdout
    assert "unknown layer 'tnah'  (did you mean 'tanh'?)" in result.stderr


def test_validate_build_runs_a_forward_pass(
    runner: CliRunner, tiny: Path, write: Callable[..., Path]
) -> None:
    result = runner.invoke(app, ["validate", "--build", str(tiny)])
    assert result.exit_code == 0, result.output
    assert "binary, 33 parameters" in result.stdout
    bad = write(TINY.replace("- dense: 1\n", "- flatten\n    - conv1d: 2\n"), "bad.yaml")
    result = runner.invoke(app, ["validate", "--build", str(bad)])
    assert result.exit_code == 2
    assert result.stderr.startswith(
        f"error {bad}:13:7  model.layers.3  conv1d(out_channels=2, kernel_size=3, stride=1, "
        "padding=0, dilation=1, bias=True): conv1d needs an input of 2 dimension(s)"
    )


def test_list_layers_in_every_format(runner: CliRunner) -> None:
    result = runner.invoke(app, ["list", "layers", "--format", "csv"])
    assert result.exit_code == 0
    rows = {r["name"]: r for r in csv.DictReader(result.stdout.splitlines())}
    assert rows["dense"]["aliases"] == "linear"
    assert "units (required)" in rows["dense"]["parameters"]
    assert rows["leaky_relu"]["parameters"] == "negative_slope=0.01"
    assert rows["gelu"]["kind"] == "activation"
    losses = json.loads(runner.invoke(app, ["list", "losses", "--format", "json"]).stdout)
    assert {r["name"] for r in losses} >= {"mse", "bce", "cross_entropy", "huber"}
    markdown = runner.invoke(app, ["list", "optimizers", "--format", "markdown"]).stdout
    assert markdown.splitlines()[0].startswith("| name | aliases | parameters")
    table = runner.invoke(app, ["list", "datasets"])
    assert "circles" in table.stdout


def test_schema_is_json(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["schema"])
    assert json.loads(result.stdout)["title"] == "Spec"
    result = runner.invoke(app, ["schema", "--out", str(tmp_path / "s.json")])
    assert json.loads((tmp_path / "s.json").read_text())["type"] == "object"


def test_brackets_in_a_file_are_printed_not_read_as_markup(
    runner: CliRunner, write: Callable[..., Path]
) -> None:
    path = write(TINY + "'[/x]': 1\n'[bold]b': 2\n")
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "unknown key '[/x]'" in result.stderr
    assert "unknown key '[bold]b'" in result.stderr


def test_list_gives_whole_summaries_or_cuts_them_after_a_word(runner: CliRunner) -> None:
    from nncli.catalogue import SUMMARY_CHARS, _short

    result = runner.invoke(app, ["list", "layers", "--format", "csv"])
    assert result.exit_code == 0, result.output
    summaries = {row["name"]: row["summary"] for row in csv.DictReader(result.stdout.splitlines())}
    assert summaries["step"] == (  # its docstring's first paragraph spans two lines
        "Heaviside step: 1 where x > 0, else 0; the perceptron's output (straight-through "
        "gradient, so the `perceptron` loss trains it by Rosenblatt's rule)."
    )
    long = "word " * 40 + "last."
    assert _short(long) == ("word " * 31).strip() + "..."
    assert len(_short(long)) <= SUMMARY_CHARS
