from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import EXPERIMENTS, TINY
from rich.console import Console
from typer.testing import CliRunner

from nncli.cli import common
from nncli.cli.app import app
from nncli.config import lint, yamlio
from nncli.config.spec import load_experiment, validate

SOFTMAX_CE = """\
data: {source: blobs, centers: 3}
model:
  layers:
    - dense: 8
    - relu
    - dense: 3
    - softmax
loss: cross_entropy
"""
SIGMOID_BCE_LOGITS = """\
data: {source: circles}
model:
  layers: [dense: 8, relu, dense: 1, sigmoid]
loss: {name: bce_with_logits}
"""
COLLAPSE = """\
data: {source: circles}
model:
  layers:
    - dense: 16
    - dropout: 0.1
    - dense: 16
    - dense: 1
    - sigmoid
loss: bce
"""

DOUBLE_SOFTMAX = (
    "softmax before loss 'cross_entropy', which applies softmax itself: the outputs are "
    "squashed twice (class probabilities end up near uniform), so the loss cannot get "
    "confident and gradients shrink  (remove this softmax: cross_entropy wants the last "
    "layer's raw outputs, the logits)"
)
DOUBLE_SIGMOID = (
    "sigmoid before loss 'bce_with_logits', which applies sigmoid itself: the outputs are "
    "squashed twice (every probability lands between 0.5 and 0.73), so the loss cannot get "
    "confident and gradients shrink  (remove this sigmoid: bce_with_logits wants the last "
    "layer's raw outputs, the logits; or keep it and use loss: bce)"
)
NO_NON_LINEARITY = (
    "no non-linearity between {layers}: linear layers in a row compose into one linear map, "
    "so together they learn nothing a single layer cannot  (put an activation such as relu "
    "or tanh after each hidden layer)"
)


def warnings(text: str, *overrides: str) -> list[str]:
    doc = yamlio.loads(text, "exp.yaml")
    spec = validate(yamlio.loads(text, "exp.yaml"), overrides)
    return [str(p) for p in lint.check(spec, doc, overrides)]


def test_softmax_before_cross_entropy() -> None:
    assert warnings(SOFTMAX_CE) == [f"exp.yaml:7:7  model.layers.3  {DOUBLE_SOFTMAX}"]


def test_sigmoid_before_bce_with_logits() -> None:
    assert warnings(SIGMOID_BCE_LOGITS) == [f"exp.yaml:3:38  model.layers.3  {DOUBLE_SIGMOID}"]


def test_squashing_into_a_range_before_a_logits_loss() -> None:
    text = SOFTMAX_CE.replace("- softmax", "- tanh")
    assert warnings(text) == [
        "exp.yaml:7:7  model.layers.3  tanh before loss 'cross_entropy', which applies softmax "
        "itself: the outputs are squashed twice (the logits are confined to (-1, 1)), so the "
        "loss cannot get confident and gradients shrink  (remove this tanh: cross_entropy "
        "wants the last layer's raw outputs, the logits)"
    ]


def test_a_linear_stack_collapses_into_one_map() -> None:
    layers = "model.layers.0 (dense), model.layers.2 (dense) and model.layers.3 (dense)"
    assert warnings(COLLAPSE) == [
        f"exp.yaml:6:7  model.layers.2  {NO_NON_LINEARITY.format(layers=layers)}"
    ]


def test_each_linear_run_warns_once() -> None:
    text = (
        "data: {source: circles}\n"
        "model:\n"
        "  layers:\n"
        "    - dense: 16\n"
        "    - dense: 16\n"
        "    - tanh\n"
        "    - flatten\n"
        "    - dense: 4\n"
        "    - dropout\n"
        "    - dense: 1\n"
        "    - sigmoid\n"
        "loss: bce\n"
    )
    found = warnings(text)
    assert [w.split("  ")[:2] for w in found] == [
        ["exp.yaml:5:7", "model.layers.1"],
        ["exp.yaml:10:7", "model.layers.6"],
    ]
    assert "between model.layers.0 (dense) and model.layers.1 (dense):" in found[0]
    assert "between model.layers.4 (dense) and model.layers.6 (dense):" in found[1]


@pytest.mark.parametrize(
    ("layers", "loss", "message"),
    [
        (
            "[dense: 8, relu, dense: 1]",
            "bce",
            "exp.yaml:4:1  loss  loss 'bce' expects a probability from a final sigmoid, but the "
            "model ends with dense (model.layers.2)  (end the model with sigmoid, or use loss: "
            "bce_with_logits)",
        ),
        (
            "[dense: 3, softmax]",
            "nll",
            "exp.yaml:4:1  loss  loss 'nll' expects log-probabilities from a final log_softmax, "
            "but the model ends with softmax (model.layers.1)  (end the model with log_softmax, "
            "or use cross_entropy)",
        ),
        (
            "[dense: 1, sigmoid]",
            "perceptron",
            "exp.yaml:4:1  loss  loss 'perceptron' expects 0/1 outputs from a final step, but "
            "the model ends with sigmoid (model.layers.1)  (end the model with step)",
        ),
    ],
)
def test_a_loss_that_wants_a_final_activation(layers: str, loss: str, message: str) -> None:
    source = "blobs, centers: 3" if loss == "nll" else "circles"
    text = f"data: {{source: {source}}}\nmodel:\n  layers: {layers}\nloss:   {loss}\n"
    assert warnings(text) == [message]


@pytest.mark.parametrize(
    "layers",
    [
        "[dense: 16, gelu, dense: 1, sigmoid]",  # the tutorial network
        "[dense: 8, layernorm, dense: 1, dropout, sigmoid]",  # normalising is not linear
        "[conv1d: 4, maxpool2d, flatten, dense: 1, sigmoid]",  # max pooling is not linear
        "[dense: 1, sigmoid]",  # logistic regression
    ],
)
def test_sound_models_raise_nothing(layers: str) -> None:
    text = f"data: {{source: circles}}\nmodel:\n  layers: {layers}\nloss: bce\n"
    assert warnings(text) == []


def test_a_value_set_on_the_command_line_is_located_there() -> None:
    text = SOFTMAX_CE.replace("- softmax", "- identity")
    assert warnings(text) == []
    assert warnings(text, "model.layers.3=softmax") == [
        f"--set model.layers.3=softmax  model.layers.3  {DOUBLE_SOFTMAX}"
    ]
    # a setting inside the layer leaves it where the file has it
    assert warnings(SOFTMAX_CE, "model.layers.3.dim=-1") == [
        f"exp.yaml:7:7  model.layers.3  {DOUBLE_SOFTMAX}"
    ]


COURSE = [
    "linear_regression",
    "logistic_regression",
    "perceptron_and",
    "perceptron_or",
    "xor_perceptron",
    "xor_mlp",
    "circles",
    "moons_mlp",
    "softmax_blobs",
]


def test_every_course_experiment_is_clean() -> None:
    for name in COURSE:
        path = EXPERIMENTS / f"{name}.yaml"
        assert lint.check_experiment(load_experiment(path)) == [], path.name


def test_validate_prints_warnings_in_yellow_and_still_succeeds(
    runner: CliRunner, write: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(SOFTMAX_CE, "exp.yaml")
    with monkeypatch.context() as patch:
        patch.setattr(common, "err", Console(stderr=True, force_terminal=True, highlight=False))
        result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith("\x1b[33mwarning\x1b[0m ")
    plain = runner.invoke(app, ["validate", str(path)])
    assert plain.exit_code == 0
    assert plain.stderr == f"warning {path}:7:7  model.layers.3  {DOUBLE_SOFTMAX}\n"
    assert plain.stdout.startswith(f"ok {path}: 4 layers")


def test_train_prints_warnings_on_stderr_and_trains(
    runner: CliRunner, write: Callable[..., Path], tmp_path: Path
) -> None:
    path = write(COLLAPSE, "exp.yaml")
    result = runner.invoke(
        app, ["train", str(path), "--smoke", "--runs-dir", str(tmp_path / "runs"), "-q"]
    )
    assert result.exit_code == 0, result.output
    layers = "model.layers.0 (dense), model.layers.2 (dense) and model.layers.3 (dense)"
    assert result.stderr == (
        f"warning {path}:6:7  model.layers.2  {NO_NON_LINEARITY.format(layers=layers)}\n"
    )
    assert Path(result.stdout.strip()).parent == tmp_path / "runs"


def test_a_clean_file_prints_no_warning(runner: CliRunner, write: Callable[..., Path]) -> None:
    result = runner.invoke(app, ["validate", str(write(TINY))])
    assert result.exit_code == 0, result.output
    assert result.stderr == ""


def test_lint_imports_no_torch() -> None:
    code = "import sys, nncli.config.lint; assert 'torch' not in sys.modules, 'torch'"
    subprocess.run([sys.executable, "-c", code], check=True)


NESTED = """\
data: {source: circles}
model:
  blocks:
    unit:
      - dense: 8
      - residual: [dense: 8, dense: 8]
      - tanh
    head: [dense: 1, tanh]
  layers:
    - dense: 8
    - relu
    - unit: {repeat: 2}
    - parallel: {branches: [[dense: 4, dropout, dense: 4], [relu]]}
    - head
loss: bce
"""


def test_warnings_fire_for_layers_inside_blocks_residuals_and_branches() -> None:
    def between(*layers: str) -> str:
        return NO_NON_LINEARITY.format(layers=", ".join(layers[:-1]) + " and " + layers[-1])

    residual = "model.blocks.unit.1.residual.layers"
    branch = "model.layers.3.parallel.branches.0"
    assert warnings(NESTED) == [
        f"exp.yaml:13:49  {branch}.2  {between(f'{branch}.0 (dense)', f'{branch}.2 (dense)')}",
        f"exp.yaml:6:30  {residual}.1  {between(f'{residual}.0 (dense)', f'{residual}.1 (dense)')}",
        "exp.yaml:15:1  loss  loss 'bce' expects a probability from a final sigmoid, but the "
        "model ends with tanh (model.blocks.head.1)  (end the model with sigmoid, or use loss: "
        "bce_with_logits)",
    ]
