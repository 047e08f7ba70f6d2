from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import TINY, problems

from nncli.data import datasets
from nncli.errors import NncliError
from nncli.layers import layers
from nncli.losses import losses
from nncli.metrics import metrics
from nncli.optim import optimizers, schedulers
from nncli.registry import NoParams, Params, Registry, UnknownName

Builder = Callable[..., Any]

PROMISED_LAYERS = {
    "dense",
    "conv1d",
    "conv2d",
    "maxpool2d",
    "avgpool2d",
    "flatten",
    "dropout",
    "batchnorm1d",
    "batchnorm2d",
    "layernorm",
    "identity",
    "step",
    "sigmoid",
    "tanh",
    "relu",
    "leaky_relu",
    "elu",
    "gelu",
    "swish",
    "softmax",
}
PROMISED_LOSSES = {"mse", "mae", "huber", "bce", "bce_with_logits", "cross_entropy", "nll"}
PROMISED_OPTIMIZERS = {"sgd", "adam", "adamw", "rmsprop", "adagrad"}


class Width(Params):
    width: int = 1


def _builder(tag: str) -> Builder:
    def build(p: Params) -> str:
        return tag

    return build


@pytest.fixture
def registry() -> Registry[Builder]:
    """A private registry, so these checks never touch the real ones."""
    reg: Registry[Builder] = Registry("thing")
    reg.register("alpha", "first")(_builder("alpha"))
    reg.register("beta", params=Width, positional="width")(_builder("beta"))
    return reg


# --- registration ------------------------------------------------------------------------


def test_register_returns_the_builder_unchanged() -> None:
    reg: Registry[Builder] = Registry("thing")
    build = _builder("gamma")
    assert reg.register("gamma")(build) is build
    assert reg.get("gamma").build is build
    assert reg.get("gamma").build(NoParams()) == "gamma"


def test_registering_a_name_twice_raises(registry: Registry[Builder]) -> None:
    with pytest.raises(ValueError, match="alpha"):
        registry.register("alpha")(_builder("again"))
    assert registry.get("alpha").build(NoParams()) == "alpha"  # the first entry is kept
    assert len(registry) == 2


def test_alias_clashing_with_an_existing_name_raises(registry: Registry[Builder]) -> None:
    with pytest.raises(ValueError, match="beta"):
        registry.register("gamma", "beta")(_builder("gamma"))
    with pytest.raises(UnknownName):
        registry.get("gamma")  # nothing of the failed registration is left behind
    assert registry.get("beta").build(NoParams()) == "beta"


def test_alias_clashing_with_an_existing_alias_raises(registry: Registry[Builder]) -> None:
    with pytest.raises(ValueError, match="first"):
        registry.register("delta", "first")(_builder("delta"))
    assert registry.canonical("first") == "alpha"


def test_name_clashing_with_an_existing_alias_raises(registry: Registry[Builder]) -> None:
    with pytest.raises(ValueError, match="first"):
        registry.register("first")(_builder("first"))


@pytest.mark.parametrize(("name", "aliases"), [("Gamma", ()), ("GAMMA", ()), ("gamma", ("Gam",))])
def test_non_lowercase_names_raise(
    registry: Registry[Builder], name: str, aliases: tuple[str, ...]
) -> None:
    with pytest.raises(ValueError, match="lowercase"):
        registry.register(name, *aliases)(_builder("gamma"))
    assert len(registry) == 2


def test_positional_must_be_a_field_of_the_params(registry: Registry[Builder]) -> None:
    with pytest.raises(ValueError, match="nope"):
        registry.register("gamma", params=Width, positional="nope")(_builder("gamma"))


def test_entry_params_model_is_tagged_with_the_name(registry: Registry[Builder]) -> None:
    beta = registry.get("beta")
    assert beta.positional == "width"
    made = beta.params.model_validate({"width": 3})
    assert made.model_dump() == {"width": 3, "type": "beta"}
    assert registry.get("alpha").params().model_dump() == {"type": "alpha"}
    assert [name for name, _, _ in beta.fields()] == ["width"]


# --- lookup --------------------------------------------------------------------------------


def test_alias_resolves_to_the_canonical_entry(registry: Registry[Builder]) -> None:
    assert registry.canonical("first") == "alpha"
    entry = registry.get("first")
    assert entry.name == "alpha"
    assert entry is registry.get("alpha")
    assert entry.aliases == ("first",)


@pytest.mark.parametrize(
    ("registry_name", "alias", "canonical"),
    [
        ("layers", "linear", "dense"),
        ("layers", "silu", "swish"),
        ("losses", "l1", "mae"),
        ("losses", "l2", "mse"),
        ("losses", "ce", "cross_entropy"),
    ],
)
def test_real_aliases(registry_name: str, alias: str, canonical: str) -> None:
    real: dict[str, Registry[Any]] = {"layers": layers, "losses": losses}
    entry = real[registry_name].get(alias)
    assert entry.name == canonical
    assert entry is real[registry_name].get(canonical)


def test_unknown_name_suggests_the_closest(registry: Registry[Builder]) -> None:
    with pytest.raises(UnknownName) as caught:
        registry.get("alpah")
    assert "did you mean 'alpha'?" in str(caught.value)
    assert caught.value.suggestion == "alpha"
    assert isinstance(caught.value, NncliError)


def test_unknown_name_without_a_close_match_lists_the_valid_names(
    registry: Registry[Builder],
) -> None:
    with pytest.raises(UnknownName) as caught:
        registry.get("zzzzqqq")
    message = str(caught.value)
    assert "zzzzqqq" in message
    assert "did you mean" not in message
    assert "valid: " in message
    listed = message.split("valid: ", 1)[1].rstrip(")").split(", ")
    assert {"alpha", "beta"} <= set(listed)
    assert caught.value.suggestion is None


def test_unknown_layer_suggests_gelu() -> None:
    with pytest.raises(UnknownName) as caught:
        layers.get("gleu")
    assert "did you mean 'gelu'?" in str(caught.value)
    assert "unknown layer 'gleu'" in str(caught.value)


EVERY_REGISTRY = [layers, losses, optimizers, schedulers, metrics, datasets]


@pytest.mark.parametrize("registry_", EVERY_REGISTRY, ids=lambda r: r.kind)
def test_unknown_real_name_lists_every_valid_name(registry_: Registry[Any]) -> None:
    with pytest.raises(UnknownName) as caught:
        registry_.get("zzzzqqq")
    message = str(caught.value)
    assert "valid: " in message
    listed = message.split("valid: ", 1)[1].rstrip(")").split(", ")
    assert {entry.name for entry in registry_} <= set(listed)
    assert listed == sorted(listed)


def test_iteration_is_sorted() -> None:
    reg: Registry[Builder] = Registry("thing")
    for name in ("zeta", "alpha", "mu", "beta"):
        reg.register(name)(_builder(name))
    assert [entry.name for entry in reg] == ["alpha", "beta", "mu", "zeta"]
    assert len(reg) == 4


@pytest.mark.parametrize("registry_", EVERY_REGISTRY, ids=lambda r: r.kind)
def test_real_registries_iterate_sorted(registry_: Registry[Any]) -> None:
    names = [entry.name for entry in registry_]
    assert names == sorted(names)
    assert len(names) == len(set(names)) == len(registry_)


# --- what the product promises ----------------------------------------------------------


def test_promised_layers_are_registered() -> None:
    names = {entry.name for entry in layers}
    assert names >= PROMISED_LAYERS, PROMISED_LAYERS - names


def test_promised_losses_are_registered() -> None:
    names = {entry.name for entry in losses}
    assert names >= PROMISED_LOSSES, PROMISED_LOSSES - names


def test_promised_optimizers_are_registered() -> None:
    names = {entry.name for entry in optimizers}
    assert names >= PROMISED_OPTIMIZERS, PROMISED_OPTIMIZERS - names


def test_registry_names_are_looked_up_never_imported(
    write: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "imported"
    (tmp_path / "evilmod.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    text = (
        TINY.replace("loss: bce", "loss: evilmod")
        .replace("name: adam", "name: evilmod.thing")
        .replace("- tanh", "- evilmod:Layer")
        .replace("source: circles", "source: os.path")
    )
    found = problems(text)
    assert [p.split("  ")[1:3] for p in found] == [
        ["data", "unknown dataset 'os.path'"],
        ["model.layers.1", "unknown layer 'evilmod:Layer'"],
        ["loss", "unknown loss 'evilmod'"],
        ["optimizer", "unknown optimizer 'evilmod.thing'"],
    ]
    assert not marker.exists()
    assert "evilmod" not in sys.modules


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        (
            "sparse_categorical_crossentropy",
            "did you mean 'cross_entropy'? it takes the last layer's raw outputs (logits: end "
            "with dense, no softmax) and integer class labels",
        ),
        (
            "categorical_crossentropy",
            "did you mean 'cross_entropy'? it takes logits (end with dense, no softmax) and "
            "integer class labels, not one-hot rows",
        ),
        (
            "binary_crossentropy",
            "did you mean 'bce'? it takes probabilities (end with sigmoid) and 0/1 targets; "
            "for logits use bce_with_logits",
        ),
        (
            "mean_squared_error",
            "did you mean 'mse'? it takes the raw outputs and real-valued targets",
        ),
        (
            "CrossEntropyLoss",
            "did you mean 'cross_entropy'? like torch's CrossEntropyLoss it takes logits (no "
            "softmax) and integer class labels",
        ),
        (
            "BCEWithLogitsLoss",
            "did you mean 'bce_with_logits'? it takes logits (no sigmoid at the end) and 0/1 "
            "targets",
        ),
    ],
)
def test_keras_and_torch_loss_names_get_the_nncli_name(name: str, hint: str) -> None:
    assert problems(TINY.replace("loss: bce", f"loss: {name}")) == [
        f"exp.yaml:14:1  loss  unknown loss '{name}'  ({hint})"
    ]


def test_learning_rate_gets_lr() -> None:
    assert problems(TINY.replace("lr: 0.05", "learning_rate: 0.05")) == [
        "exp.yaml:15:25  optimizer.learning_rate  unknown key 'learning_rate'  (did you mean 'lr'?)"
    ]


def test_errors_after_a_late_registration_name_each_key_once() -> None:
    """A plugin's registration rebuilds the spec's unions; the rebuilt fields kept the old
    union's validators beside the new ones, and every error key named its tag twice
    (`data.digits.digits.splt`)."""
    import subprocess
    import sys

    code = (
        "from nncli.config import yamlio\n"
        "from nncli.config.spec import validate\n"
        "from nncli.losses import losses\n"
        "losses.register('nothing', info=losses.get('mse').info)(lambda p: None)\n"
        "text = ('data: {source: digits, splt: 1}\\nmodel: {layers: [dense: 10]}\\n'\n"
        "        'loss: {name: cross_entropy, wieght: 1}\\n')\n"
        "try:\n"
        "    validate(yamlio.loads(text, 'x.yaml'))\n"
        "except Exception as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.stdout == (
        "x.yaml:1:24  data.splt  unknown key 'splt'  (did you mean 'split'?)\n"
        "x.yaml:3:29  loss.wieght  unknown key 'wieght'  (did you mean 'weight'?)\n"
    ), out.stderr
