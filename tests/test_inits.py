"""`init:` and `bias_init:` of dense and conv layers: each draws exactly the torch.nn.init
call it names, from the run's seeded generator; a misspelled name is located."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import TINY, problems
from torch import nn

from nncli.config import spec as nspec
from nncli.config import yamlio
from nncli.engine.model import build_model
from nncli.engine.prepare import prepare
from nncli.inits import inits

Fill = Callable[[torch.Tensor], object]

# init as written in the file -> the same call written directly in torch
CASES: dict[str, tuple[str, Fill]] = {
    "default": ("default", lambda w: None),
    "zeros": ("zeros", nn.init.zeros_),
    "normal": ("{normal: 0.3}", lambda w: nn.init.normal_(w, 0.0, 0.3)),
    "uniform": ("{uniform: {a: -0.2, b: 0.1}}", lambda w: nn.init.uniform_(w, -0.2, 0.1)),
    "xavier_uniform": ("xavier_uniform", nn.init.xavier_uniform_),
    "xavier_normal": ("{xavier_normal: 2.0}", lambda w: nn.init.xavier_normal_(w, 2.0)),
    "kaiming_uniform": ("he_uniform", lambda w: nn.init.kaiming_uniform_(w, nonlinearity="relu")),
    "kaiming_normal": (
        "{name: kaiming_normal, nonlinearity: tanh, mode: fan_out}",
        lambda w: nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="tanh"),
    ),
    "orthogonal": ("orthogonal", nn.init.orthogonal_),
}


def _layers(lines: str) -> list[nspec.LayerSpec]:
    text = f"data: circles\nmodel:\n  layers:\n{lines}loss: bce_with_logits\n"
    return list(nspec.validate(yamlio.loads(text, "f.yaml")).model.layers)


def test_every_init_has_a_case() -> None:
    assert {entry.name for entry in inits} == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_dense_and_conv_weights_are_the_torch_init_call(name: str) -> None:
    written, fill = CASES[name]
    specs = _layers(
        f"    - {{type: conv2d, out_channels: 3, init: {written}}}\n"
        "    - flatten\n"
        f"    - {{type: dense, units: 4, init: {written}}}\n"
    )
    torch.manual_seed(11)
    model, _ = build_model(specs, torch.ones(2, 2, 5, 5))

    torch.manual_seed(11)
    conv = nn.Conv2d(2, 3, 3)
    fill(conv.weight)
    dense = nn.Linear(27, 4)
    fill(dense.weight)
    if name != "default":  # a given init starts the biases at zero, torch's keeps its own
        nn.init.zeros_(conv.bias)
        nn.init.zeros_(dense.bias)
    for got, expected in ((model[0], conv), (model[2], dense)):
        assert torch.equal(got.weight, expected.weight), name
        assert torch.equal(got.bias, expected.bias), name


def test_bias_init_sets_every_bias_with_or_without_init() -> None:
    specs = _layers(
        "    - {type: dense, units: 3, bias_init: 0.5}\n"
        "    - {type: dense, units: 2, init: {normal: 0.01}, bias_init: -1}\n"
    )
    torch.manual_seed(0)
    model, _ = build_model(specs, torch.ones(2, 4))
    torch.manual_seed(0)
    first, second = nn.Linear(4, 3), nn.Linear(3, 2)
    nn.init.normal_(second.weight, 0.0, 0.01)  # the numpy lessons' 0.01 * randn
    assert torch.equal(model[0].weight, first.weight)
    assert model[0].bias.tolist() == [0.5, 0.5, 0.5]
    assert torch.equal(model[1].weight, second.weight)
    assert model[1].bias.tolist() == [-1.0, -1.0]


def test_a_run_draws_its_init_from_its_seed() -> None:
    text = TINY.replace("- dense: 8", "- {dense: {units: 8, init: xavier_normal}}")
    spec = nspec.validate(yamlio.loads(text, "tiny.yaml"))
    first, again = prepare(spec).model[0], prepare(spec).model[0]
    torch.manual_seed(spec.seed)  # the run's seed, as prepare seeds before building
    expected = nn.Linear(2, 8)
    nn.init.xavier_normal_(expected.weight)
    assert torch.equal(first.weight, expected.weight)
    assert torch.equal(again.weight, expected.weight)
    assert first.bias.tolist() == [0.0] * 8


def test_without_init_nothing_changes_in_config_yaml() -> None:
    spec = nspec.validate(yamlio.loads(TINY, "tiny.yaml"))
    assert nspec.resolved(spec)["model"]["layers"][0] == {"type": "dense", "units": 8, "bias": True}


def test_an_unknown_init_is_located_with_did_you_mean() -> None:
    text = TINY.replace("- dense: 8", "- {dense: {units: 8, init: he_nromal}}")
    assert problems(text) == [
        "exp.yaml:10:26  model.layers.0.dense.init  unknown init 'he_nromal'  "
        "(did you mean 'he_normal'?)"
    ]
    text = TINY.replace("- dense: 1", "- {type: dense, units: 1, init: {normal: {sd: 1}}}")
    assert problems(text) == [
        "exp.yaml:12:47  model.layers.2.init.normal.sd  unknown key 'sd'  (did you mean 'std'?)"
    ]


def test_bias_init_without_a_bias_is_refused() -> None:
    text = TINY.replace("- dense: 1", "- {type: dense, units: 1, bias: false, bias_init: 0}")
    assert problems(text) == [
        "exp.yaml:12:7  model.layers.2  bias_init needs a bias: leave bias_init out, "
        "or set bias: true"
    ]


def _checker() -> str:
    found = Path(sys.executable).with_name("check-jsonschema")
    return str(found) if found.is_file() else shutil.which("check-jsonschema") or ""


def _check(schema: Path, path: Path) -> subprocess.CompletedProcess[str]:
    command = [_checker(), "--schemafile", str(schema), str(path)]
    return subprocess.run(command, capture_output=True, text=True, check=False)


def test_the_schema_takes_every_written_form_and_refuses_an_unknown_init(
    tmp_path: Path,
) -> None:
    schema = tmp_path / "nncli.schema.json"
    schema.write_text(json.dumps(nspec.schema()))
    good = tmp_path / "good.yaml"
    good.write_text(
        "data: circles\nmodel:\n  layers:\n"
        "    - {dense: {units: 8, init: he_normal, bias_init: 0.1}}\n"
        "    - {type: conv1d, out_channels: 2, init: {normal: 0.01}}\n"
        "    - {type: dense, units: 4, init: {name: uniform, a: -1, b: 1}}\n"
        "    - {dense: {units: 1, init: {xavier_uniform: {gain: 2}}}}\n"
        "loss: bce_with_logits\n"
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text(good.read_text().replace("he_normal", "he_nromal"))
    nspec.validate(yamlio.load(good))
    accepted = _check(schema, good)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    refused = _check(schema, bad)
    assert refused.returncode == 1, refused.stdout + refused.stderr
