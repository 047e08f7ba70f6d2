"""`nncli show RUN`: the model table gives each layer's output shape and parameter count."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from nncli.cli.app import app


def test_show_gives_each_layers_output_shape_and_parameters(
    runner: CliRunner, checkpoint: Path
) -> None:
    run = checkpoint.parent.parent

    result = runner.invoke(app, ["show", str(run)])

    assert result.exit_code == 0, result.output
    rows = [
        [cell.strip() for cell in line.strip("│").split("│")]
        for line in result.stdout.splitlines()
        if line.startswith("│")
    ]
    model = [row for row in rows if len(row) == 5]
    assert model == [
        ["0", "dense", "units=8, bias=True", "8", "24"],
        ["1", "tanh", "", "8", "0"],
        ["2", "dense", "units=1, bias=True", "1", "9"],
        ["3", "sigmoid", "", "1", "0"],
    ]
    assert "\n33 parameters\n" in result.stdout
