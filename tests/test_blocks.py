"""Layers that hold layers (residual, parallel, named blocks with repeat) and the global
poolings: the same computation as torch written by hand (outputs and gradients), shapes,
located errors, and a trained run that shows, exports and resumes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import EXPERIMENTS, assert_exports_agree, interrupted_run, problems
from torch import nn
from typer.testing import CliRunner

from nncli.cli.app import app
from nncli.config import yamlio
from nncli.config.spec import validate
from nncli.engine.model import ShapeError, build_model
from nncli.layers import layers

HEAD = "data: {source: digits, shape: [1, 8, 8]}\nmodel:\n"
TAIL = "loss: cross_entropy\n"


def model_of(model: str, name: str = "f.yaml") -> tuple[nn.Sequential, list[tuple[int, ...]]]:
    """The model a file's model section builds, for a batch of 1x8x8 images."""
    spec = validate(yamlio.loads(HEAD + model + TAIL, name))
    torch.manual_seed(0)
    return build_model(spec.model, torch.randn(4, 1, 8, 8))


def same_outputs_and_gradients(
    built: nn.Module, by_hand: Callable[[torch.Tensor], torch.Tensor], shape: tuple[int, ...]
) -> None:
    """`built` and the hand-written computation (on built's own weights) agree on outputs
    and on the gradients of every weight and of the input."""
    built.eval()
    x = torch.randn(3, *shape, generator=torch.Generator().manual_seed(1), requires_grad=True)
    up = torch.randn_like(built(x))
    got = built(x)
    grads = torch.autograd.grad(got, [x, *built.parameters()], up)
    want = by_hand(x)
    expected = torch.autograd.grad(want, [x, *built.parameters()], up)
    torch.testing.assert_close(got, want)
    for g, e in zip(grads, expected, strict=True):
        torch.testing.assert_close(g, e)


def conv(m: nn.Module, x: torch.Tensor, stride: int = 1, padding: int = 1) -> torch.Tensor:
    assert isinstance(m, nn.Conv2d)
    return F.conv2d(x, m.weight, m.bias, stride=stride, padding=padding)


# --- the same computation as torch -----------------------------------------------------------


def test_every_layer_that_holds_layers_is_tested_here() -> None:
    nested = {e.name for e in layers if e.info.nested}
    assert nested == {"residual", "parallel", "block"}


def test_residual_adds_its_input() -> None:
    model, shapes = model_of(
        "  layers:\n    - residual: [conv2d: {out_channels: 1, padding: 1}, relu,"
        " conv2d: {out_channels: 1, padding: 1}]\n    - flatten\n    - dense: 3\n"
    )
    assert shapes == [(1, 8, 8), (64,), (3,)]
    body = model[0].body

    def by_hand(x: torch.Tensor) -> torch.Tensor:
        y = conv(body[2], torch.relu(conv(body[0], x))) + x
        return F.linear(y.flatten(1), model[2].weight, model[2].bias)

    assert model[0].projection is None
    same_outputs_and_gradients(model, by_hand, (1, 8, 8))


def test_a_residual_that_changes_the_shape_goes_through_a_strided_1x1_projection() -> None:
    model, shapes = model_of(
        "  layers:\n    - residual: [conv2d: {out_channels: 4, stride: 2, padding: 1}]\n"
        "    - global_avg_pool\n"
    )
    assert shapes == [(4, 4, 4), (4,)]
    block = model[0]
    assert isinstance(block.projection, nn.Conv2d)
    assert block.projection.kernel_size == (1, 1) and block.projection.stride == (2, 2)
    assert block.projection.bias is None

    def by_hand(x: torch.Tensor) -> torch.Tensor:
        skip = F.conv2d(x, block.projection.weight, stride=2)
        return (conv(block.body[0], x, stride=2) + skip).mean(dim=(2, 3))

    same_outputs_and_gradients(model, by_hand, (1, 8, 8))


def test_a_residual_of_vectors_projects_with_a_linear_map() -> None:
    model, shapes = model_of("  layers:\n    - flatten\n    - residual: [dense: 5, tanh]\n")
    assert shapes == [(64,), (5,)]
    block = model[1]

    def by_hand(x: torch.Tensor) -> torch.Tensor:
        v = x.flatten(1)
        return torch.tanh(F.linear(v, block.body[0].weight, block.body[0].bias)) + (
            v @ block.projection.weight.T
        )

    same_outputs_and_gradients(model, by_hand, (1, 8, 8))


@pytest.mark.parametrize("merge", ["concat", "add"])
def test_parallel_branches_are_concatenated_or_added(merge: str) -> None:
    model, shapes = model_of(
        "  layers:\n    - conv2d: {out_channels: 2, padding: 1}\n"
        f"    - parallel: {{merge: {merge}, branches: [[conv2d: {{out_channels: 2, padding: 1}},"
        " relu], [maxpool2d: {kernel_size: 3, stride: 1, padding: 1}], [identity]]}\n"
    )
    assert shapes[-1] == ((6, 8, 8) if merge == "concat" else (2, 8, 8))
    branches = model[1].branches

    def by_hand(x: torch.Tensor) -> torch.Tensor:
        h = conv(model[0], x)
        outs = [torch.relu(conv(branches[0][0], h)), F.max_pool2d(h, 3, 1, 1), h]
        return torch.cat(outs, dim=1) if merge == "concat" else outs[0] + outs[1] + outs[2]

    same_outputs_and_gradients(model, by_hand, (1, 8, 8))


def test_a_named_block_repeated_has_weights_of_its_own_each_time() -> None:
    model, shapes = model_of(
        "  blocks:\n    unit: [conv2d: {out_channels: 3, padding: 1}, relu]\n"
        "  layers:\n    - unit: {repeat: 3}\n    - unit\n    - global_max_pool\n"
    )
    assert shapes == [(3, 8, 8), (3, 8, 8), (3,)]
    convs = [model[0][0][0], model[0][1][0], model[0][2][0], model[1][0]]
    assert len({id(c.weight) for c in convs}) == 4

    def by_hand(x: torch.Tensor) -> torch.Tensor:
        for c in convs:
            x = torch.relu(conv(c, x))
        return x.amax(dim=(2, 3))

    same_outputs_and_gradients(model, by_hand, (1, 8, 8))


def test_blocks_nest_in_residuals_in_branches_in_blocks() -> None:
    model, shapes = model_of(
        "  blocks:\n"
        "    inner: [residual: [conv2d: {out_channels: 2, padding: 1}]]\n"
        "    outer:\n      - parallel: {merge: add, branches: [[inner], [inner: {repeat: 2}]]}\n"
        "  layers:\n    - conv2d: {out_channels: 2, padding: 1}\n    - outer\n"
    )
    assert shapes == [(2, 8, 8), (2, 8, 8)]
    a = model[1][0].branches[0][0][0]
    b1, b2 = (rep[0] for rep in model[1][0].branches[1][0])

    def by_hand(x: torch.Tensor) -> torch.Tensor:
        h = conv(model[0], x)

        def res(r: nn.Module, v: torch.Tensor) -> torch.Tensor:
            return conv(r.body[0], v) + v

        return res(a, h) + res(b2, res(b1, h))

    same_outputs_and_gradients(model, by_hand, (1, 8, 8))


# --- errors, located -----------------------------------------------------------------------


def shape_error(model: str) -> str:
    with pytest.raises(ShapeError) as caught:
        model_of(model)
    return str(caught.value)


def test_a_shape_mismatch_inside_a_block_names_the_path_and_the_line() -> None:
    message = shape_error(
        "  blocks:\n    basic:\n      - residual:\n"
        "          - conv2d: {out_channels: 4, padding: 1}\n          - batchnorm1d\n"
        "      - relu\n  layers:\n    - basic: {repeat: 2}\n"
    )
    assert message == (
        "f.yaml:7:13  model.blocks.basic.0.residual.layers.1  "
        "model.layers.0 (block(name=basic, repeat=2)) > model.blocks.basic.0 "
        "(residual(projection=auto)) > model.blocks.basic.0.residual.layers.1 "
        "(batchnorm1d(eps=1e-05, momentum=0.1)): batchnorm1d needs (features,) or "
        "(channels, length), got (4, 8, 8)"
    )


def test_adding_branches_of_unequal_shapes_is_refused_at_the_parallel() -> None:
    message = shape_error(
        "  layers:\n    - conv2d: 2\n"
        "    - parallel: {merge: add, branches: [[conv2d: 4], [conv2d: {out_channels: 2,"
        " padding: 1}]]}\n"
    )
    assert message == (
        "f.yaml:5:7  model.layers.1  parallel(merge=add): parallel: merge add needs equal "
        "shapes; branch 0 gives (4, 4, 4), branch 1 gives (2, 6, 6)"
    )


def test_concatenating_branches_of_other_sizes_is_refused() -> None:
    message = shape_error(
        "  layers:\n    - parallel: [[conv2d: 8], [maxpool2d: {kernel_size: 3, stride: 1,"
        " padding: 1}]]\n"
    )
    assert message.endswith(
        "parallel: merge concat joins along the first dimension and needs the others "
        "equal; branch 0 gives (8, 6, 6), branch 1 gives (1, 8, 8)"
    )


def test_a_residual_without_projection_must_keep_the_shape() -> None:
    message = shape_error(
        "  layers:\n    - residual: {projection: none, layers: [conv2d: {out_channels: 3,"
        " padding: 1}]}\n"
    )
    assert message == (
        "f.yaml:4:7  model.layers.0  residual(projection=none): residual: its layers turn "
        "(1, 8, 8) into (3, 8, 8), and projection is none; make them keep the shape, or set "
        "projection: auto"
    )


def test_a_layer_that_cannot_run_inside_a_branch_is_named_at_its_line() -> None:
    message = shape_error(
        "  layers:\n    - parallel:\n        - [identity]\n        - [conv2d: {out_channels: 2,"
        " kernel_size: 9}]\n"
    )
    assert message.startswith(
        "f.yaml:6:12  model.layers.0.parallel.branches.1.0  model.layers.0 (parallel(merge=concat)) > "
        "model.layers.0.parallel.branches.1.0 (conv2d(out_channels=2, kernel_size=9, "
        "stride=1, padding=0, dilation=1, bias=True)) cannot take input of shape (1, 8, 8): "
    )


def spec_problems(model: str) -> list[str]:
    return problems(HEAD + model + TAIL)


def test_an_unknown_block_gets_did_you_mean() -> None:
    assert spec_problems(
        "  blocks:\n    basic: [relu]\n  layers:\n    - basci: {repeat: 2}\n    - dense: 3\n"
    ) == ["exp.yaml:6:7  model.layers.0  unknown layer 'basci'  (did you mean 'basic'?)"]
    assert spec_problems(
        "  blocks:\n    basic: [relu]\n  layers:\n    - block: basci\n    - dense: 3\n"
    ) == ["exp.yaml:6:7  model.layers.0.block.name  unknown block 'basci'  (did you mean 'basic'?)"]


def test_a_block_may_not_take_a_layers_name_or_hold_itself() -> None:
    assert spec_problems("  blocks:\n    relu: [dense: 2]\n  layers: [dense: 3]\n") == [
        "exp.yaml:4:5  model.blocks.relu  block 'relu' has the name of the relu layer; "
        "rename the block"
    ]
    assert spec_problems("  blocks:\n    a: [b]\n    b: [residual: [a]]\n  layers: [a]\n") == [
        "exp.yaml:4:5  model.blocks.a  block 'a' uses itself (a -> b -> a); a block cannot "
        "hold itself",
        "exp.yaml:5:5  model.blocks.b  block 'b' uses itself (b -> a -> b); a block cannot "
        "hold itself",
    ]


def test_nested_lists_are_checked_like_model_layers() -> None:
    assert spec_problems(
        "  layers:\n    - residual:\n        - {conv2d: 4, activation: relu}\n"
        "        - dense: -2\n    - parallel: [[relux], [relu]]\n    - parallel: [[relu]]\n"
    ) == [
        "exp.yaml:6:11  model.layers.0.residual.layers.1.dense.units  Input should be greater "
        "than 0, got -2",
        "exp.yaml:7:19  model.layers.1.parallel.branches.0.0  unknown layer 'relux'  "
        "(did you mean 'relu'?)",
        "exp.yaml:8:7  model.layers.2.parallel.branches  List should have at least 2 items "
        "after validation, not 1",
    ]


def test_keras_activation_sugar_works_inside_a_block() -> None:
    model, _ = model_of(
        "  layers:\n    - residual: [{conv2d: {out_channels: 1, padding: 1}, activation: tanh}]\n"
    )
    assert [type(m).__name__ for m in model[0].body] == ["Conv2d", "Tanh"]


# --- a trained run: show, predict, export, resume ---------------------------------------------

RESNET = """\
seed: 0
data: {{source: npz, path: {path}, split: {{test: 0.25}}}}
model:
  blocks:
    unit:
      - residual: [conv2d: {{out_channels: 4, padding: 1}}, batchnorm2d, relu]
  layers:
    - conv2d: {{out_channels: 4, padding: 1}}
    - unit: {{repeat: 2}}
    - parallel: {{merge: concat, branches: [[conv2d: {{out_channels: 2, padding: 1}}], [relu]]}}
    - residual: [conv2d: {{out_channels: 8, stride: 2, padding: 1}}]
    - global_avg_pool
    - dense: 2
loss: cross_entropy
train: {{epochs: 3, batch_size: 8}}
"""


@pytest.fixture
def resnet(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    y = np.arange(48) % 2
    x = rng.normal(size=(48, 1, 6, 6)).astype(np.float32)
    x[:, :, :, :3] += 2.0 * y[:, None, None, None]
    np.savez(tmp_path / "images.npz", x=x, y=y)
    path = tmp_path / "resnet.yaml"
    path.write_text(RESNET.format(path=tmp_path / "images.npz"))
    return path


def train(runner: CliRunner, spec: Path, runs: Path) -> Path:
    result = runner.invoke(app, ["train", str(spec), "--runs-dir", str(runs), "-q"])
    assert result.exit_code == 0, result.output
    return Path(result.stdout.strip())


def test_show_draws_the_nested_structure(runner: CliRunner, resnet: Path, tmp_path: Path) -> None:
    run = train(runner, resnet, tmp_path / "runs")
    result = runner.invoke(app, ["show", str(run)])
    assert result.exit_code == 0, result.output
    cells = [
        [cell.strip() for cell in line.strip("│").split("│")]
        for line in result.stdout.splitlines()
        if line.startswith("│") and line.count("│") == 6
    ]
    rows = [[n, layer, output, params] for n, layer, _, output, params in cells]
    indents = [
        len(line.split("│")[2]) - len(line.split("│")[2].lstrip())
        for line in result.stdout.splitlines()
        if line.startswith("│") and line.count("│") == 6
    ]
    assert indents[:5] == [1, 1, 3, 5, 7]  # each level inside a block two spaces further in
    assert rows == [
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
    assert "\n932 parameters\n" in result.stdout


def test_export_to_onnx_and_torch_export_give_the_models_outputs(
    runner: CliRunner, resnet: Path, tmp_path: Path
) -> None:
    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")
    run = train(runner, resnet, tmp_path / "runs")
    x = torch.randn(5, 1, 6, 6, generator=torch.Generator().manual_seed(3))
    assert_exports_agree(runner, run, x, tmp_path)


def test_predict_and_eval_read_a_run_with_blocks(
    runner: CliRunner, resnet: Path, tmp_path: Path
) -> None:
    run = train(runner, resnet, tmp_path / "runs")
    result = runner.invoke(app, ["eval", str(run)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["predict", str(run), str(tmp_path / "images.npz")])
    assert result.exit_code == 0, result.output
    assert len(result.stdout.strip().splitlines()) == 1 + 48


def test_resume_is_exact(
    runner: CliRunner, resnet: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = train(runner, resnet, tmp_path / "whole")
    folder = interrupted_run(runner, resnet, tmp_path / "cut", monkeypatch, at=1)
    result = runner.invoke(app, ["resume", str(folder)])
    assert result.exit_code == 0, result.output

    def rows(run: Path) -> list[list[str]]:  # every column but the epoch's duration
        lines = (run / "metrics.csv").read_text().splitlines()
        return [line.split(",")[:-1] for line in lines]

    assert rows(folder) == rows(whole)
    assert len(rows(whole)) == 4


# --- registry, schema, list ------------------------------------------------------------------


def test_list_layers_and_the_schema_cover_the_new_entries(runner: CliRunner) -> None:
    listed = runner.invoke(app, ["list", "layers", "--format", "csv"])
    assert listed.exit_code == 0, listed.output
    names = {line.split(",")[0] for line in listed.stdout.splitlines()[1:]}
    assert {"residual", "parallel", "block", "global_avg_pool", "global_max_pool"} <= names
    schema = runner.invoke(app, ["schema"])
    assert schema.exit_code == 0, schema.output
    defs = json.loads(schema.stdout)["$defs"]
    assert {"ResidualLayer", "ParallelLayer", "BlockLayer", "GlobalAvgPoolLayer"} <= set(defs)
    blocks = defs["ModelSpec"]["properties"]["blocks"]
    assert blocks["patternProperties"]["^[a-z][a-z0-9_]*$"]["minItems"] == 1
    assert blocks["additionalProperties"] is False


def test_a_layer_registered_later_is_valid_inside_nested_lists(tmp_path: Path) -> None:
    """The nested lists take the union of the moment: a plugin's layer goes in a block."""
    code = (
        "from nncli.layers import LayerInfo, layers\n"
        "from nncli.registry import NoParams\n"
        "@layers.register('twice', info=LayerInfo())\n"
        "def twice(p: NoParams, shape: tuple) -> object:\n"
        "    '''2x.'''\n"
        "    raise NotImplementedError\n"
        "from nncli.config import yamlio\n"
        "from nncli.config.spec import validate\n"
        "text = 'data: circles\\nmodel:\\n  blocks: {b: [residual: [twice]]}\\n"
        "  layers: [parallel: [[b], [twice]]]\\nloss: mse\\n'\n"
        "spec = validate(yamlio.loads(text, 'f.yaml'))\n"
        "print(spec.model.blocks['b'][0].layers[0].type)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "twice\n"


def test_a_model_without_blocks_resolves_as_before_blocks_existed() -> None:
    # `blocks: {}` in config.yaml made every earlier run's checkpoint disagree with its
    # config, so resume refused it as edited
    from nncli.config.spec import load_spec, resolved

    spec = load_spec(EXPERIMENTS / "circles.yaml")
    assert list(resolved(spec)["model"]) == ["layers"]
