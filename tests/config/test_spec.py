from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import EXPERIMENTS, TINY, problems, train_refused
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from nncli.config import yamlio
from nncli.config.spec import Spec, load_spec, resolved, schema, validate
from nncli.errors import NncliError


def load_spec_text(text: str, overrides: tuple[str, ...] = ()) -> object:
    from nncli.config.spec import validate

    return validate(yamlio.loads(text, "exp.yaml"), overrides)


def test_tiny_spec_resolves_every_default(tiny: Path) -> None:
    spec = load_spec(tiny)
    config = resolved(spec)
    assert config["model"]["layers"][0] == {"type": "dense", "units": 8, "bias": True}
    assert config["model"]["layers"][1] == {"type": "tanh"}
    assert config["loss"] == {"name": "bce", "weight": None}
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
        "exp.yaml:15:25  optimizer.lrr  unknown key 'lrr'  (did you mean 'lr'?)"
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
        "exp.yaml:6:3  data.nosie  unknown key 'nosie'  (did you mean 'noise'?)",
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
    assert found.startswith("exp.yaml:17:1  metrics  r2 do(es) not apply to loss 'bce'")


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
        "--set optimizer.lr=fast  optimizer.lr  Input should be a valid number, got 'fast'"
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
            "optimizer  nesterov needs momentum > 0 and dampening 0",
        ),
        (
            "{name: adam, betas: [1.5, 0.9]}",
            "optimizer.betas.0  Input should be less than 1, got 1.5",
        ),
    ],
)
def test_settings_torch_would_refuse_are_caught_at_validation(change: str, message: str) -> None:
    (found,) = problems(TINY.replace("{name: adam, lr: 0.05}", change))
    assert message in found


def test_same_padding_needs_stride_one() -> None:
    text = TINY.replace("- dense: 8", "- {type: conv2d, out_channels: 4, padding: same, stride: 2}")
    (found,) = problems(text)
    assert "model.layers.0  padding 'same' needs stride 1" in found


def test_override_into_an_omitted_optimizer_keeps_its_default() -> None:
    text = TINY.replace("optimizer: {name: adam, lr: 0.05}\n", "")
    config = resolved(load_spec_text(text, ("optimizer.lr=0.2",)))  # type: ignore[arg-type]
    assert config["optimizer"]["name"] == "adam"
    assert config["optimizer"]["lr"] == 0.2


@pytest.mark.parametrize("value", [".nan", ".NaN", ".inf", "-.inf", "1e999", "-1e999"])
@pytest.mark.parametrize(
    ("key", "where"),
    [
        ("lr: 0.05", "exp.yaml:15:25  optimizer.lr"),
        ("noise: 0.05", "exp.yaml:6:3  data.noise"),
        ("val: 0.2", "exp.yaml:7:11  data.split.val"),
    ],
)
def test_non_finite_numbers_are_refused_where_a_number_is_meant(
    value: str, key: str, where: str
) -> None:
    name = key.split(":", maxsplit=1)[0]
    (found,) = problems(TINY.replace(key, f"{name}: {value}"))
    assert found.startswith(f"{where}  Input should be a finite number, got ")


@pytest.mark.parametrize(
    "name", ["../escaped", "a/b", "..", "/tmp/abs", "a\\b", ".hidden", "~root"]
)
def test_a_run_name_is_never_a_path(
    runner: CliRunner, write: Callable[..., Path], tmp_path: Path, name: str
) -> None:
    path = write(TINY.replace("name: tiny", f"name: '{name}'"))
    stderr = train_refused(runner, path, tmp_path)
    assert f"error {path}:1:1  name  a run name holds letters, digits and _ . + - only" in stderr
    assert not (tmp_path.parent / "escaped").exists()


def test_names_from_the_file_stem_are_one_path_component(write: Callable[..., Path]) -> None:
    for stem in ("..", "a b", "weird:name", "ü"):
        name = load_spec(write(TINY.replace("name: tiny\n", ""), f"{stem}.yaml")).name
        assert name is not None
        assert os.sep not in name
        assert Path(f"stamp_{name}_0000").name == f"stamp_{name}_0000"


def test_resolved_config_round_trips_for_every_experiment() -> None:
    for path in EXPERIMENTS.glob("*.yaml"):
        spec = load_spec(path)
        from nncli.config import yamlio
        from nncli.config.spec import validate

        assert validate(yamlio.loads(yamlio.dump(resolved(spec)))) == spec


BASES = [TINY, *(p.read_text() for p in sorted(EXPERIMENTS.glob("*.yaml"))[:6])]


TOKENS = [
    *("no", "Yes", "on", "OFF", "y", "true", "~", "null", "", "''", '""', "-0", "0x1F", "0b2"),
    *("010", "0o17", "1:30", "1_000", ".nan", "-.inf", "1e999", "1" + "0" * 4400, "2001-13-45"),
    *("[", "]", "{", "}", "[]", "{}", "{a: 1}", "[1, [2, [3]]]", "- a", "? a", ": b", "|", ">-"),
    *("&a x", "*a", "*zz", "<<", "<<: *a", "{<<: [*a, *a]}", "&a [*a]", "!!str", "!foo x"),
    *("!!python/name:os.system", "!!python/object/apply:os.system [x]", "!!binary 'a!b'"),
    *("!!int x", "!!float y", "!!bool z", "!!timestamp q", "!!set {a}", "!!omap [a: 1]"),
    *("%YAML 1.1\n---", "---", "...", "#", "\t", "\x07", "\ufeff", "\r", "é", "'\\x'", '"\\q"'),
    *("dense: 0", "dense: -1", "gelu", "dense", "type: conv2d", "name: huber", "source: csv"),
    *("units: 2", "split: {val: 0.9, test: 0.9}", "metrics: [r2]", "monitor: val_f1"),
]


KEYS = ["seed", "name", "data", "model", "loss", "train", "optimizer", "sweep", "metrics"]


SETTINGS = [
    "train.epochs",
    "optimizer.lr",
    "model.layers.0",
    "model.layers.0.dense",
    "model.layers.9.x",
    "data.split.val",
    "loss",
    "loss.name",
    "name",
    "seed.0",
    "metrics.0.x",
    "sweep.range.lr",
    "",
    ".",
]


text_or_token = st.one_of(
    st.sampled_from(TOKENS),
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=12),
    st.text(max_size=6),  # any character, control characters and surrogates included
)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A real experiment file, changed a few times the way people and transfers break files."""
    lines = draw(st.sampled_from(BASES)).splitlines(keepends=True)
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, max(len(lines) - 1, 0)))
        j = draw(st.integers(0, max(len(lines) - 1, 0)))
        how = draw(st.integers(0, 7))
        if not lines:
            lines = [draw(text_or_token) + "\n"]
        elif how == 0:
            del lines[i]
        elif how == 1:
            lines.insert(i, lines[j])
        elif how == 2:
            lines[i], lines[j] = lines[j], lines[i]
        elif how == 3:  # a new value
            key, sep, _ = lines[i].partition(": ")
            lines[i] = f"{key}{sep or ': '}{draw(text_or_token)}\n"
        elif how == 4:  # a new key
            indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
            _, _, value = lines[i].partition(":")
            key = draw(st.one_of(st.sampled_from(KEYS), text_or_token))
            lines[i] = f"{indent}{key}:{value or ' 1'}\n".replace("\n\n", "\n")
        elif how == 5:  # indentation moved
            lines[i] = " " * draw(st.integers(0, 6)) + lines[i].lstrip(" ")
        elif how == 6:  # text inserted anywhere
            at = draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:at] + draw(text_or_token) + lines[i][at:]
        else:  # cut off
            lines = lines[:i]
    raw = bytearray("".join(lines).encode("utf-8", "surrogatepass"))
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):  # now and then a damaged byte
        if raw:
            raw[draw(st.integers(0, len(raw) - 1))] = draw(st.integers(0, 255))
    return bytes(raw)


settings.register_profile(
    "ci",
    max_examples=int(os.environ.get("NNCLI_HYPOTHESIS_EXAMPLES", "400")),
    deadline=None,
    derandomize=True,  # the same examples on every run: CI fails only on a change of code
    database=None,  # writes nothing into the checkout
    suppress_health_check=[HealthCheck.too_slow],
)


@settings(settings.get_profile("ci"))
@given(
    raw=mutated(),
    overrides=st.lists(
        st.tuples(st.sampled_from(SETTINGS), text_or_token).map(lambda kv: f"{kv[0]}={kv[1]}"),
        max_size=2,
    ),
)
def test_any_file_gives_a_spec_or_an_nncli_error(
    tmp_path_factory: pytest.TempPathFactory, raw: bytes, overrides: list[str]
) -> None:
    path = tmp_path_factory.getbasetemp() / "fuzz.yaml"
    path.write_bytes(raw)
    try:
        spec = load_spec(path, overrides)
    except NncliError as exc:
        assert str(exc)  # a message for the user
        return
    assert isinstance(spec, Spec)
    # what a run folder keeps (config.yaml, without the sweep) reads back as the same spec
    again = validate(yamlio.loads(yamlio.dump(resolved(spec))))
    assert again == spec.model_copy(update={"sweep": None})


KERAS = """\
data: {source: circles}
model:
  layers:
    - {dense: 8, activation: tanh}
    - type: dense
      units: 1
      activation: sigmoid
loss: bce
"""


def test_an_activation_beside_a_layer_is_two_layers_as_in_keras() -> None:
    spec = validate(yamlio.loads(KERAS, "exp.yaml"))
    assert resolved(spec)["model"]["layers"] == [
        {"type": "dense", "units": 8, "bias": True},
        {"type": "tanh"},
        {"type": "dense", "units": 1, "bias": True},
        {"type": "sigmoid"},
    ]
    conv = validate(yamlio.loads(KERAS.replace("dense: 8", "conv2d: 4"), "exp.yaml"))
    assert [layer.type for layer in conv.model.layers] == ["conv2d", "tanh", "dense", "sigmoid"]


def test_errors_in_an_activation_shorthand_keep_their_place() -> None:
    text = """\
data: {source: circles}
model:
  layers:
    - {dense: x, activation: tahn}
    - type: dense
      units: 1
      activation: linear
    - {dropout: 0.5, activation: relu}
loss: bce
"""
    assert problems(text) == [
        "exp.yaml:4:8  model.layers.0.dense.units  Input should be a valid integer, got 'x'",
        "exp.yaml:4:18  model.layers.0.activation  unknown layer 'tahn'  (did you mean 'tanh'?)",
        "exp.yaml:7:7  model.layers.1.activation  'linear' names the dense layer, not an "
        "activation; leave `activation` out for none",
        "exp.yaml:8:22  model.layers.2.activation  `activation` goes with a layer that has "
        "weights (dense, conv1d, conv2d), not dropout; write the activation as the next layer",
    ]


def test_lint_points_at_the_activation_written_beside_its_layer() -> None:
    from nncli.config.lint import check

    doc = yamlio.loads(KERAS.replace("loss: bce", "loss: bce_with_logits"), "exp.yaml")
    (warning,) = check(validate(doc), doc)
    assert str(warning).startswith(
        "exp.yaml:7:7  model.layers.1.activation  sigmoid before loss 'bce_with_logits'"
    )
