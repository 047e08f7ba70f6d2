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


NESTED = """\
seed: 0
data: {{source: npz, path: {path}, split: {{test: 0.25}}}}
model:
  blocks:
    unit:
      - residual: [conv2d: {{out_channels: 4, padding: 1}}, batchnorm2d, relu]
  layers:
    - conv2d: {{out_channels: 4, padding: 1}}
    - unit: {{repeat: 2}}
    - parallel: {{merge: {merge}, branches: [[conv2d: {{out_channels: 2, padding: 1}}], [relu]]}}
    - residual: [conv2d: {{out_channels: 8, stride: 2, padding: 1}}]
    - global_avg_pool
    - dense: 2
loss: cross_entropy
train: {{epochs: 3, batch_size: 8}}
"""


def _nested(tmp_path: Path, merge: str = "concat") -> Path:
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 1, 6, 6)).astype(np.float32)
    np.savez(tmp_path / "images.npz", x=x, y=np.arange(48) % 2)
    path = tmp_path / "nested.yaml"
    path.write_text(NESTED.format(path=tmp_path / "images.npz", merge=merge))
    return path


def test_show_of_an_experiment_file_draws_its_nested_model_untrained(
    runner: CliRunner, tmp_path: Path
) -> None:
    spec = _nested(tmp_path)

    result = runner.invoke(app, ["show", str(spec)])

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(
        f"experiment {spec} (not trained: the model as training would build it)\n"
        "data npz, loss cross_entropy, optimizer adam lr 0.001\n"
    )
    lines = [line for line in result.stdout.splitlines() if line.count("│") == 6]
    rows = [[cell.strip() for cell in line.strip("│").split("│")] for line in lines]
    assert [[n, layer, output, params] for n, layer, _, output, params in rows] == [
        ["0", "conv2d", "4 x 6 x 6", "40"],
        ["1", "block", "4 x 6 x 6", "312"],
        ["1.0", "unit 1 of 2", "4 x 6 x 6", "156"],
        ["1.0.0", "residual", "4 x 6 x 6", "156"],
        ["1.0.0.body.0", "conv2d", "4 x 6 x 6", "148"],
        ["1.0.0.body.1", "batchnorm2d", "4 x 6 x 6", "8"],
        ["1.0.0.body.2", "relu", "4 x 6 x 6", "0"],
        ["1.1", "unit 2 of 2", "4 x 6 x 6", "156"],
        ["1.1.0", "residual", "4 x 6 x 6", "156"],
        ["1.1.0.body.0", "conv2d", "4 x 6 x 6", "148"],
        ["1.1.0.body.1", "batchnorm2d", "4 x 6 x 6", "8"],
        ["1.1.0.body.2", "relu", "4 x 6 x 6", "0"],
        ["2", "parallel", "6 x 6 x 6", "74"],
        ["2.branches.0.0", "conv2d", "2 x 6 x 6", "74"],
        ["2.branches.1.0", "relu", "4 x 6 x 6", "0"],
        ["3", "residual", "8 x 3 x 3", "488"],
        ["3.body.0", "conv2d", "8 x 3 x 3", "440"],
        ["3.projection", "projection", "8 x 3 x 3", "48"],
        ["4", "global_avg_pool", "8", "0"],
        ["5", "dense", "2", "18"],
    ]
    layer_cells = [line.split("│")[2] for line in lines]
    indents = [len(cell) - len(cell.lstrip()) for cell in layer_cells]
    assert indents[:5] == [1, 1, 3, 5, 7]  # each level two spaces further in
    assert rows[4][2] == "out_channels=4, kernel_size=3, stride=1, padding=1, dilation=1, bias=True"
    assert result.stdout.endswith("\n932 parameters\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images.npz", "nested.yaml"]


def test_show_format_json_of_an_experiment_file_gives_its_layers(
    runner: CliRunner, tmp_path: Path
) -> None:
    import json

    result = runner.invoke(app, ["show", str(_nested(tmp_path)), "--format", "json"])

    assert result.exit_code == 0, result.output
    facts = json.loads(result.stdout)
    assert facts["parameters"] == 932
    assert facts["config"]["model"]["layers"][5] == {"type": "dense", "units": 2, "bias": True}
    assert facts["layers"][16] == {
        "module": "3.body.0",
        "depth": 1,
        "layer": "conv2d",
        "settings": {
            "out_channels": 8,
            "kernel_size": 3,
            "stride": 2,
            "padding": 1,
            "dilation": 1,
            "bias": True,
        },
        "output": [8, 3, 3],
        "params": 440,
    }


def test_show_of_an_experiment_file_refuses_weights_and_locates_a_model_mistake(
    runner: CliRunner, tmp_path: Path
) -> None:
    spec = _nested(tmp_path)
    weights = runner.invoke(app, ["show", str(spec), "--weights"])
    assert weights.exit_code == 2, weights.output
    assert weights.stdout == ""
    assert weights.stderr == (
        f"error {spec} is an experiment file, which holds no learned weights; --weights "
        f"reads a trained run: train it (nncli train {spec}), then show the run folder\n"
    )

    broken = _nested(tmp_path, merge="add")  # branches of 2 and 4 channels
    result = runner.invoke(app, ["show", str(broken)])
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr == (
        f"error {broken}:10:7  model.layers.2  parallel(merge=add): parallel: merge add needs "
        "equal shapes; branch 0 gives (2, 6, 6), branch 1 gives (4, 6, 6)\n"
    )
    assert "Traceback" not in result.output
