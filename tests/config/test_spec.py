from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import TINY

from nncli.config import yamlio
from nncli.config.spec import load_spec, resolved, schema
from nncli.errors import SpecError


def problems(text: str, overrides: tuple[str, ...] = ()) -> list[str]:
    with pytest.raises(SpecError) as info:
        load_spec_text(text, overrides)
    return [str(p) for p in info.value.problems]


def load_spec_text(text: str, overrides: tuple[str, ...] = ()) -> object:
    from nncli.config.spec import validate

    return validate(yamlio.loads(text, "exp.yaml"), overrides)


def test_tiny_spec_resolves_every_default(tiny: Path) -> None:
    spec = load_spec(tiny)
    config = resolved(spec)
    assert config["model"]["layers"][0] == {"type": "dense", "units": 8, "bias": True}
    assert config["model"]["layers"][1] == {"type": "tanh"}
    assert config["loss"] == {"name": "bce"}
    assert config["optimizer"]["name"] == "adam"
    assert config["optimizer"]["betas"] == [0.9, 0.999]
    assert config["train"]["shuffle"] is True
    # the resolved config is itself a valid experiment file giving the same spec
    assert load_spec_text(yamlio.dump(config)) == spec


def test_name_defaults_to_file_stem(write: Callable[..., Path]) -> None:
    path = write(TINY.replace("name: tiny\n", ""), "my exp.yaml")
    assert load_spec(path).name == "my_exp"


def test_misspelt_key_names_file_line_key_and_suggestion() -> None:
    text = TINY.replace("lr: 0.05", "lrr: 0.05")
    assert problems(text) == [
        "exp.yaml:15:25  optimizer.adam.lrr  unknown key 'lrr'  (did you mean 'lr'?)"
    ]


def test_wrong_type_is_reported_with_its_line() -> None:
    text = TINY.replace("epochs: 3", "epochs: three")
    assert problems(text) == [
        "exp.yaml:16:9  train.epochs  Input should be a valid integer, got 'three'"
    ]


def test_strings_are_not_silently_numbers() -> None:
    text = TINY.replace("epochs: 3", "epochs: '3'")
    assert problems(text) == [
        "exp.yaml:16:9  train.epochs  Input should be a valid integer, got '3'"
    ]


def test_all_problems_are_reported_at_once() -> None:
    text = (
        TINY.replace("- tanh", "- tahn")
        .replace("dense: 1\n", "dense: 0\n")
        .replace("noise: 0.05", "nosie: 0.05")
        .replace("device: cpu", "device: gpu")
    )
    found = problems(text)
    assert found == [
        "exp.yaml:6:3  data.circles.nosie  unknown key 'nosie'  (did you mean 'noise'?)",
        "exp.yaml:11:7  model.layers.1  unknown layer 'tahn'  (did you mean 'tanh'?)",
        "exp.yaml:12:7  model.layers.2.dense.units  Input should be greater than 0, got 0",
        "exp.yaml:16:36  train.device  expected auto, cpu, cuda, cuda:N or mps, got 'gpu'",
    ]


def test_unknown_loss_and_optimizer_suggest_names() -> None:
    text = TINY.replace("loss: bce", "loss: bec").replace("name: adam", "name: adma")
    assert problems(text) == [
        "exp.yaml:14:1  loss  unknown loss 'bec'  (did you mean 'bce'?)",
        "exp.yaml:15:13  optimizer  unknown optimizer 'adma'  (did you mean 'adam'?)",
    ]


def test_missing_section() -> None:
    text = TINY.replace("loss: bce\n", "")
    assert problems(text) == ["exp.yaml:1:1  loss  required key is missing"]


def test_layer_forms_are_equivalent() -> None:
    forms = [
        "- dense: 8",
        "- linear: 8",
        "- {type: dense, units: 8}",
        "- {type: linear, units: 8}",
        "- dense: {units: 8}",
    ]
    specs = [load_spec_text(TINY.replace("- dense: 8", form)) for form in forms]
    assert all(s == specs[0] for s in specs)


def test_layer_without_parameter_given_one() -> None:
    text = TINY.replace("- tanh", "- tanh: 3")
    assert problems(text) == [
        "exp.yaml:11:7  model.layers.1  layer 'tanh' takes no value; write it as a bare name"
    ]


def test_metric_must_fit_the_loss() -> None:
    text = TINY.replace("metrics: [accuracy, f1]", "metrics: [accuracy, r2]")
    (found,) = problems(text)
    assert found.startswith("exp.yaml:1:1  <top>  r2 do(es) not apply to loss 'bce'")


def test_default_metrics_follow_the_loss() -> None:
    no_metrics = TINY.replace("metrics: [accuracy, f1]\n", "")
    assert load_spec_text(no_metrics).metrics == ["accuracy"]  # type: ignore[attr-defined]
    regression = no_metrics.replace("loss: bce", "loss: mse")
    assert load_spec_text(regression).metrics == ["mae", "rmse", "r2"]  # type: ignore[attr-defined]


def test_name_cannot_be_a_path() -> None:
    (found,) = problems(TINY.replace("name: tiny", "name: ../../etc"))
    assert found == (
        "exp.yaml:1:1  name  a run name holds letters, digits and _ . + - only "
        "(no path separators), got '../../etc'"
    )


def test_overrides_reach_any_key_including_list_items() -> None:
    spec = load_spec_text(
        TINY,
        (
            "optimizer.lr=0.01",
            "model.layers.0.dense=32",
            "model.layers.1=relu",
            "train.epochs=5",
            "data.split.val=0.1",
            "loss=mse",
            "metrics=[mae]",
        ),
    )
    config = resolved(spec)  # type: ignore[arg-type]
    assert config["optimizer"]["lr"] == 0.01
    assert config["model"]["layers"][0]["units"] == 32
    assert config["model"]["layers"][1] == {"type": "relu"}
    assert config["train"]["epochs"] == 5
    assert config["data"]["split"]["val"] == 0.1
    assert config["loss"] == {"name": "mse"}


def test_override_of_full_map_layer_and_bare_name() -> None:
    text = TINY.replace("- dense: 8", "- {type: dense, units: 8}").replace("- tanh", "- leaky_relu")
    spec = load_spec_text(
        text, ("model.layers.0.dense=16", "model.layers.1.negative_slope=0.2", "loss.name=bce")
    )
    config = resolved(spec)  # type: ignore[arg-type]
    assert config["model"]["layers"][0]["units"] == 16
    assert config["model"]["layers"][1] == {"type": "leaky_relu", "negative_slope": 0.2}


def test_override_errors_name_the_setting() -> None:
    assert problems(TINY, ("optimizer.lr=fast",)) == [
        "--set optimizer.lr=fast  optimizer.adam.lr  Input should be a valid number, got 'fast'"
    ]
    assert problems(TINY, ("model.layers.9.dense=3",)) == [
        "--set model.layers.9.dense=3  model.layers.9  no item 9: the list has 4 item(s)  (count from 0)"
    ]
    assert problems(TINY, ("optimizer.lr",)) == [
        "--set optimizer.lr  <top>  expected KEY=VALUE  (e.g. --set optimizer.lr=0.01)"
    ]
    assert problems(TINY, ("train.epochs=2", "train.epoch=3")) == [
        "--set train.epoch=3  train.epoch  unknown key 'epoch'  (did you mean 'epochs'?)"
    ]


def test_schema_describes_every_layer_and_shorthand() -> None:
    doc = schema()
    text = str(doc)
    for name in ("dense", "conv2d", "gelu", "cross_entropy", "adamw", "circles"):
        assert f"'{name}'" in text
    assert doc["title"] == "Spec"
    assert set(doc["required"]) == {"data", "model", "loss"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            "{name: sgd, nesterov: true}",
            "optimizer.sgd  nesterov needs momentum > 0 and dampening 0",
        ),
        (
            "{name: adam, betas: [1.5, 0.9]}",
            "optimizer.adam.betas.0  Input should be less than 1, got 1.5",
        ),
    ],
)
def test_settings_torch_would_refuse_are_caught_at_validation(change: str, message: str) -> None:
    (found,) = problems(TINY.replace("{name: adam, lr: 0.05}", change))
    assert message in found


def test_same_padding_needs_stride_one() -> None:
    text = TINY.replace("- dense: 8", "- {type: conv2d, out_channels: 4, padding: same, stride: 2}")
    (found,) = problems(text)
    assert "model.layers.0.conv2d  padding 'same' needs stride 1" in found


def test_override_into_an_omitted_optimizer_keeps_its_default() -> None:
    text = TINY.replace("optimizer: {name: adam, lr: 0.05}\n", "")
    config = resolved(load_spec_text(text, ("optimizer.lr=0.2",)))  # type: ignore[arg-type]
    assert config["optimizer"]["name"] == "adam"
    assert config["optimizer"]["lr"] == 0.2
