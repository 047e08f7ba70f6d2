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


def test_show_format_json_gives_the_same_facts_as_one_object(
    runner: CliRunner, checkpoint: Path
) -> None:
    import json

    import torch
    import yaml

    run = checkpoint.parent.parent
    result = runner.invoke(app, ["show", str(run), "--format", "json", "--weights"])
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    facts = json.loads(result.stdout)  # the whole of stdout is one JSON object

    recorded = json.loads((run / "run.json").read_text())
    for key in ("status", "epochs", "epochs_done", "device", "seed", "n_params", "task"):
        assert facts[key] == recorded[key], key
    assert facts["config"] == yaml.safe_load((run / "config.yaml").read_text())
    assert (facts["data"], facts["loss"], facts["optimizer"], facts["lr"]) == (
        "circles",
        "bce",
        "adam",
        0.05,
    )
    assert [(r["layer"], r["settings"], r["output"], r["params"]) for r in facts["layers"]] == [
        ("dense", {"units": 8, "bias": True}, [8], 24),
        ("tanh", {}, [8], 0),
        ("dense", {"units": 1, "bias": True}, [1], 9),
        ("sigmoid", {}, [1], 0),
    ]
    assert facts["parameters"] == 33
    best = recorded["best"]["val_loss"]
    assert facts["metrics"]["val_loss"] == {
        "final": recorded["final"]["val_loss"],
        "best": best["value"],
        "best_epoch": best["epoch"],
    }
    assert "epoch" not in facts["metrics"]
    weights = facts["weights"]
    assert weights["checkpoint"] == "last.pt"
    model = torch.load(checkpoint, weights_only=True)["model"]
    assert weights["tensors"]["0.weight"]["shape"] == [8, 2]
    assert torch.equal(torch.tensor(weights["tensors"]["2.bias"]["values"]), model["2.bias"])
    assert weights["equation"] == []  # two layers: no single neuron's equation

    text = runner.invoke(app, ["show", str(run), "--format", "text"])
    assert text.stdout == runner.invoke(app, ["show", str(run)]).stdout
    assert text.stdout.startswith(f"run {run}\nstatus completed, 3/3 epochs")


def test_show_format_json_of_a_broken_run_prints_no_json(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["show", str(tmp_path), "--format", "json"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith(f"error {tmp_path} is not a run folder")
