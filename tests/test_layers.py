from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nncli.config import spec as nspec
from nncli.config import yamlio
from nncli.config.spec import LayerSpec
from nncli.engine.model import ShapeError, build_model
from nncli.errors import NncliError
from nncli.layers import LayerShapeError, activations, layers

Shape = tuple[int, ...]
Reference = Callable[[nn.Module, torch.Tensor], torch.Tensor]
BATCH = 6


def _tensor(module: nn.Module, name: str) -> torch.Tensor:
    value = getattr(module, name)
    assert isinstance(value, torch.Tensor), f"{type(module).__name__}.{name} is {value!r}"
    return value.detach()


def _w(module: nn.Module) -> torch.Tensor:
    return _tensor(module, "weight")


def _b(module: nn.Module) -> torch.Tensor:
    return _tensor(module, "bias")


def _normalise(x: torch.Tensor, dims: tuple[int, ...], eps: float) -> torch.Tensor:
    mean = x.mean(dim=dims, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=dims, keepdim=True)  # biased, as normalisation uses
    return (x - mean) / torch.sqrt(var + eps)


def _channel(t: torch.Tensor, ndim: int) -> torch.Tensor:
    """A per-channel vector shaped to broadcast over a (N, C, ...) tensor of `ndim` dims."""
    return t.reshape(1, -1, *([1] * (ndim - 2)))


def _batchnorm(eps: float) -> Reference:
    def reference(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
        dims = (0, *range(2, x.ndim))
        y = _normalise(x, dims, eps)
        return y * _channel(_w(m), x.ndim) + _channel(_b(m), x.ndim)

    return reference


def _layernorm(eps: float, affine: bool) -> Reference:
    def reference(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
        y = _normalise(x, (-1,), eps)
        return y * _w(m) + _b(m) if affine else y

    return reference


def _gelu_exact(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2.0)))


def _gelu_tanh(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def _softmax(dim: int) -> Reference:
    def reference(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
        e = torch.exp(x)
        return e / e.sum(dim=dim, keepdim=True)

    return reference


@dataclass(frozen=True)
class Case:
    """One way of building a layer, the sample shape it gets, and what it must compute."""

    params: dict[str, Any]
    shape: Shape
    reference: Reference
    train: bool = False  # run the module in training mode (batch statistics, dropout)
    label: str = field(default="")


CASES: dict[str, tuple[Case, ...]] = {
    "dense": (
        Case({"units": 5}, (7,), lambda m, x: x @ _w(m).T + _b(m)),
        Case({"units": 3, "bias": False}, (4,), lambda m, x: x @ _w(m).T, label="no bias"),
    ),
    "conv1d": (
        Case(
            {"out_channels": 3, "kernel_size": 3, "stride": 2, "padding": 1},
            (2, 11),
            lambda m, x: F.conv1d(x, _w(m), _b(m), stride=2, padding=1),
        ),
        Case(
            {"out_channels": 2, "padding": "valid", "dilation": 2},
            (3, 12),
            lambda m, x: F.conv1d(x, _w(m), _b(m), dilation=2),
            label="valid dilated",
        ),
    ),
    "conv2d": (
        Case({"out_channels": 4}, (2, 6, 6), lambda m, x: F.conv2d(x, _w(m), _b(m))),
        Case(
            {"out_channels": 3, "kernel_size": 5, "padding": "same"},
            (2, 7, 7),
            lambda m, x: F.conv2d(x, _w(m), _b(m), padding=2),
            label="same",
        ),
        Case(
            {"out_channels": 2, "stride": 2, "padding": 1, "bias": False},
            (1, 8, 8),
            lambda m, x: F.conv2d(x, _w(m), None, stride=2, padding=1),
            label="strided no bias",
        ),
    ),
    "maxpool2d": (
        Case({}, (3, 6, 8), lambda m, x: x.reshape(BATCH, 3, 3, 2, 4, 2).amax(dim=(3, 5))),
        Case(
            {"kernel_size": 3, "stride": 1},
            (2, 5, 6),
            lambda m, x: x.unfold(2, 3, 1).unfold(3, 3, 1).amax(dim=(-2, -1)),
            label="overlapping",
        ),
        Case(
            {"padding": 1},
            (2, 5, 5),
            lambda m, x: (
                F.pad(x, (1, 1, 1, 1), value=-math.inf)
                .unfold(2, 2, 2)
                .unfold(3, 2, 2)
                .amax(dim=(-2, -1))
            ),
            label="padded",
        ),
    ),
    "avgpool2d": (
        Case({}, (3, 6, 8), lambda m, x: x.reshape(BATCH, 3, 3, 2, 4, 2).mean(dim=(3, 5))),
        Case(
            {"kernel_size": 3, "stride": 2},
            (2, 7, 7),
            lambda m, x: x.unfold(2, 3, 2).unfold(3, 3, 2).mean(dim=(-2, -1)),
            label="strided",
        ),
        Case(
            {"padding": 1},
            (2, 5, 5),  # zero padding counts in the mean (torch's count_include_pad)
            lambda m, x: F.pad(x, (1, 1, 1, 1)).unfold(2, 2, 2).unfold(3, 2, 2).mean(dim=(-2, -1)),
            label="padded",
        ),
    ),
    "flatten": (Case({}, (2, 3, 4), lambda m, x: x.reshape(BATCH, 24)),),
    "global_avg_pool": (
        Case({}, (3, 4, 5), lambda m, x: x.mean(dim=(2, 3))),
        Case({}, (3, 7), lambda m, x: x.mean(dim=2), label="over time"),
    ),
    "global_max_pool": (
        Case({}, (3, 4, 5), lambda m, x: x.amax(dim=(2, 3))),
        Case({}, (3, 7), lambda m, x: x.amax(dim=2), label="over time"),
    ),
    "dropout": (
        Case({"p": 0.5}, (10,), lambda m, x: x, label="eval is identity"),
        Case({"p": 0.0}, (10,), lambda m, x: x, train=True, label="p=0 train"),
    ),
    "batchnorm1d": (
        Case({}, (5,), _batchnorm(1e-5), train=True),
        Case({"eps": 0.5}, (5,), _batchnorm(0.5), train=True, label="eps"),
        Case({}, (3, 4), _batchnorm(1e-5), train=True, label="channels x length"),
    ),
    "batchnorm2d": (
        Case({}, (3, 4, 4), _batchnorm(1e-5), train=True),
        Case({"eps": 0.5}, (2, 3, 3), _batchnorm(0.5), train=True, label="eps"),
    ),
    "layernorm": (
        Case({}, (6,), _layernorm(1e-5, affine=True)),
        Case(
            {"eps": 0.5, "elementwise_affine": False},
            (3, 5),
            _layernorm(0.5, affine=False),
            label="no affine",
        ),
    ),
    "identity": (Case({}, (4,), lambda m, x: x),),
    "step": (Case({}, (9,), lambda m, x: (x > 0).float()),),
    "sigmoid": (Case({}, (9,), lambda m, x: 1 / (1 + torch.exp(-x))),),
    "tanh": (Case({}, (9,), lambda m, x: (torch.exp(2 * x) - 1) / (torch.exp(2 * x) + 1)),),
    "relu": (Case({}, (9,), lambda m, x: torch.where(x > 0, x, torch.zeros_like(x))),),
    "leaky_relu": (
        Case({"negative_slope": 0.2}, (9,), lambda m, x: torch.where(x > 0, x, 0.2 * x)),
        Case({}, (9,), lambda m, x: torch.where(x > 0, x, 0.01 * x), label="default"),
    ),
    "elu": (
        Case({"alpha": 0.5}, (9,), lambda m, x: torch.where(x > 0, x, 0.5 * (torch.exp(x) - 1))),
        Case({}, (9,), lambda m, x: torch.where(x > 0, x, torch.exp(x) - 1), label="default"),
    ),
    "gelu": (
        Case({}, (9,), _gelu_exact),
        Case({"approximate": "tanh"}, (9,), _gelu_tanh, label="tanh"),
    ),
    "swish": (Case({}, (9,), lambda m, x: x / (1 + torch.exp(-x))),),
    "softmax": (
        Case({}, (5,), _softmax(-1)),
        Case({"dim": 1}, (3, 4), _softmax(1), label="dim 1"),
    ),
    "log_softmax": (
        Case({}, (5,), lambda m, x: x - torch.log(torch.exp(x).sum(dim=-1, keepdim=True))),
    ),
}

# nested layers: tests/test_blocks.py; sequence layers: tests/test_sequence_layers.py
LAYER_NAMES = [
    e.name for e in layers if not e.info.nested and e.build.__module__ != "nncli.sequence"
]


def _batch(shape: Shape, seed: int = 0, scale: float = 2.0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return scale * torch.randn(BATCH, *shape, generator=generator)


def _prefixed(prefix: str) -> Callable[[str], str]:
    def message(default: str) -> str:
        return f"{prefix}: {default}"

    return message


def _build(name: str, params: dict[str, Any], shape: Shape) -> nn.Module:
    entry = layers.get(name)
    module = entry.build(entry.params.model_validate(params), shape)
    assert isinstance(module, nn.Module)
    return module


def _specs(layer_lines: str) -> list[LayerSpec]:
    """The layers of a small experiment file, validated as `nncli` reads them."""
    text = "data: {source: circles}\nmodel:\n  layers:\n" + layer_lines + "loss: cross_entropy\n"
    return list(nspec.validate(yamlio.loads(text, "f.yaml")).model.layers)


# --- every registered layer ----------------------------------------------------------------


def test_every_layer_has_cases() -> None:
    assert set(CASES) == set(LAYER_NAMES)


@pytest.mark.parametrize("name", LAYER_NAMES)
def test_layer_matches_torch(name: str) -> None:
    assert name in CASES, f"layer '{name}' has no case in CASES: add one"
    for i, case in enumerate(CASES[name]):
        torch.manual_seed(i)
        module = _build(name, case.params, case.shape)
        module.train(case.train)
        x = _batch(case.shape, seed=i)
        with torch.no_grad():
            got = module(x)
            expected = case.reference(module, x)
        torch.testing.assert_close(got, expected, msg=_prefixed(f"{name} ({case.label or i})"))


@pytest.mark.parametrize("name", activations())
def test_activations_keep_the_shape(name: str) -> None:
    assert name in LAYER_NAMES
    x = _batch((3, 4))
    module = _build(name, {}, (3, 4))
    assert module(x).shape == x.shape
    assert not list(module.parameters())


@pytest.mark.parametrize(
    ("name", "params", "shape", "count"),
    [
        ("dense", {"units": 5}, (7,), 7 * 5 + 5),
        ("dense", {"units": 5, "bias": False}, (7,), 7 * 5),
        ("conv1d", {"out_channels": 4, "kernel_size": 5}, (2, 20), 4 * 2 * 5 + 4),
        ("conv2d", {"out_channels": 4}, (2, 6, 6), 4 * 2 * 9 + 4),
        ("conv2d", {"out_channels": 4, "bias": False}, (2, 6, 6), 4 * 2 * 9),
        ("batchnorm1d", {}, (5,), 2 * 5),
        ("batchnorm2d", {}, (3, 4, 4), 2 * 3),
        ("layernorm", {}, (6,), 2 * 6),
        ("layernorm", {"elementwise_affine": False}, (6,), 0),
        ("maxpool2d", {}, (3, 4, 4), 0),
        ("flatten", {}, (3, 4, 4), 0),
    ],
)
def test_input_sizes_are_inferred(
    name: str, params: dict[str, Any], shape: Shape, count: int
) -> None:
    module = _build(name, params, shape)
    assert sum(p.numel() for p in module.parameters()) == count


# --- behaviour beyond a formula -----------------------------------------------------------


def test_step_is_zero_at_zero() -> None:
    module = _build("step", {}, (5,))
    x = torch.tensor([[-2.0, -1e-6, 0.0, 1e-6, 3.0]])
    torch.testing.assert_close(module(x), torch.tensor([[0.0, 0.0, 0.0, 1.0, 1.0]]))


def test_step_passes_gradients_straight_through() -> None:
    """The true derivative is zero; the straight-through backward is the identity, which is
    what lets the perceptron loss train a step neuron."""
    module = _build("step", {}, (5,))
    x = torch.tensor([[-2.0, -1e-6, 0.0, 1e-6, 3.0]], requires_grad=True)
    upstream = torch.tensor([[0.5, -1.0, 2.0, 3.0, -4.0]])
    y = module(x)
    assert y.tolist() == [[0.0, 0.0, 0.0, 1.0, 1.0]]  # exactly the step's values
    (grad,) = torch.autograd.grad(y, x, upstream)
    torch.testing.assert_close(grad, upstream)


def test_step_exports_as_plain_tensor_operations() -> None:
    """No Python autograd.Function inside, so exported and saved models keep the step."""
    model = nn.Sequential(nn.Linear(2, 1), _build("step", {}, (1,)))
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[0].bias.fill_(-1.5)
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
    exported = torch.export.export(model, (x,)).module()
    assert exported(x).tolist() == [[0.0], [0.0], [1.0]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated
        traced = torch.jit.trace(model, x)  # checks that a second trace gives the same graph
    assert traced(x).tolist() == [[0.0], [0.0], [1.0]]


def test_softmax_rows_sum_to_one() -> None:
    x = _batch((7,), scale=5.0)
    y = _build("softmax", {}, (7,))(x)
    assert bool((y > 0).all())
    torch.testing.assert_close(y.sum(dim=-1), torch.ones(BATCH))
    torch.testing.assert_close(y, torch.exp(x) / torch.exp(x).sum(dim=-1, keepdim=True))


def test_gelu_approximations_differ() -> None:
    x = _batch((50,))
    exact = _build("gelu", {}, (50,))(x)
    approx = _build("gelu", {"approximate": "tanh"}, (50,))(x)
    assert not torch.equal(exact, approx)
    torch.testing.assert_close(exact, approx, atol=1e-2, rtol=0)


def test_dropout_in_eval_mode_is_identity() -> None:
    module = _build("dropout", {"p": 0.9}, (100,))
    module.eval()
    x = _batch((100,))
    assert torch.equal(module(x), x)


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_dropout_in_train_mode_zeroes_about_p_and_scales_survivors(p: float) -> None:
    torch.manual_seed(0)
    module = _build("dropout", {"p": p}, (1000,))
    module.train()
    x = torch.rand(100, 1000) + 0.5  # no zeros of its own
    y = module(x)
    dropped = y == 0
    assert abs(dropped.float().mean().item() - p) < 0.01
    torch.testing.assert_close(y[~dropped], x[~dropped] / (1 - p))


@pytest.mark.parametrize(("name", "shape"), [("batchnorm1d", (4,)), ("batchnorm2d", (3, 5, 5))])
def test_batchnorm_in_train_mode_normalises_each_channel(name: str, shape: Shape) -> None:
    module = _build(name, {}, shape)
    module.train()
    x = 3.0 + 4.0 * torch.randn(64, *shape, generator=torch.Generator().manual_seed(1))
    y = module(x)
    dims = (0, *range(2, x.ndim))
    torch.testing.assert_close(y.mean(dim=dims), torch.zeros(shape[0]), atol=1e-5, rtol=0)
    torch.testing.assert_close(
        y.var(dim=dims, unbiased=False), torch.ones(shape[0]), atol=1e-3, rtol=0
    )


def test_layernorm_normalises_each_row() -> None:
    x = 3.0 + 4.0 * _batch((32,))
    y = _build("layernorm", {}, (32,))(x)
    torch.testing.assert_close(y.mean(dim=-1), torch.zeros(BATCH), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(dim=-1, unbiased=False), torch.ones(BATCH), atol=1e-3, rtol=0)
    # rows are independent: changing one row leaves the others alone
    x2 = x.clone()
    x2[0] *= 10
    torch.testing.assert_close(_build("layernorm", {}, (32,))(x2)[1:], y[1:])


# --- shape errors ------------------------------------------------------------------------


def test_dense_on_images_asks_for_flatten() -> None:
    with pytest.raises(LayerShapeError, match="flatten") as caught:
        _build("dense", {"units": 4}, (1, 8, 8))
    assert "(1, 8, 8)" in str(caught.value)
    assert isinstance(caught.value, NncliError)


@pytest.mark.parametrize("name", ["conv2d", "conv1d"])
def test_conv_on_flat_samples_mentions_data_shape(name: str) -> None:
    with pytest.raises(LayerShapeError, match=r"data\.shape") as caught:
        _build(name, {"out_channels": 4}, (8,))
    assert "(8,)" in str(caught.value)


@pytest.mark.parametrize("name", ["maxpool2d", "avgpool2d", "batchnorm2d"])
def test_image_layers_refuse_flat_samples(name: str) -> None:
    with pytest.raises(LayerShapeError, match=name):
        _build(name, {}, (8,))


# --- build_model ----------------------------------------------------------------------------

LENET = """\
    - conv2d: {out_channels: 6, kernel_size: 3, padding: 1}
    - relu
    - maxpool2d
    - conv2d: 16
    - relu
    - flatten
    - dense: 10
"""


def test_lenet_like_stack_infers_sizes() -> None:
    specs = _specs(LENET)
    assert [s.type for s in specs] == [
        "conv2d",
        "relu",
        "maxpool2d",
        "conv2d",
        "relu",
        "flatten",
        "dense",
    ]
    torch.manual_seed(0)
    sample = torch.randn(4, 1, 8, 8)
    model, shapes = build_model(specs, sample)
    assert shapes == [(6, 8, 8), (6, 8, 8), (6, 4, 4), (16, 2, 2), (16, 2, 2), (64,), (10,)]
    assert all(module.training for module in model.modules())
    conv1, conv2, dense = model[0], model[3], model[6]
    assert isinstance(conv1, nn.Conv2d)
    assert isinstance(conv2, nn.Conv2d)
    assert isinstance(dense, nn.Linear)
    assert (conv1.in_channels, conv1.out_channels, conv1.padding) == (1, 6, (1, 1))
    assert (conv2.in_channels, conv2.out_channels, conv2.kernel_size) == (6, 16, (3, 3))
    assert (dense.in_features, dense.out_features) == (64, 10)
    x = torch.randn(3, 1, 8, 8)
    out = model(x)
    assert out.shape == (3, 10)
    # the model is the stack applied in order
    h = F.max_pool2d(F.relu(F.conv2d(x, conv1.weight, conv1.bias, padding=1)), 2)
    h = F.relu(F.conv2d(h, conv2.weight, conv2.bias)).flatten(1)
    torch.testing.assert_close(out, h @ dense.weight.T + dense.bias)


def test_build_model_on_flat_data() -> None:
    specs = _specs("    - dense: 16\n    - gelu\n    - {type: dense, units: 3}\n    - softmax\n")
    model, shapes = build_model(specs, torch.randn(5, 2))
    assert shapes == [(16,), (16,), (3,), (3,)]
    torch.testing.assert_close(model(torch.randn(7, 2)).sum(dim=1), torch.ones(7))


def test_shape_error_from_a_layer_names_it() -> None:
    specs = _specs("    - dense: 4\n")
    with pytest.raises(ShapeError) as caught:
        build_model(specs, torch.randn(4, 1, 8, 8))
    message = str(caught.value)
    assert "model.layers.0" in message
    assert "dense" in message
    assert "(1, 8, 8)" in message
    assert "flatten" in message
    assert isinstance(caught.value, NncliError)


def test_shape_error_late_in_the_stack_names_the_layer_and_shapes() -> None:
    layer_lines = (
        "    - conv2d: {out_channels: 6, kernel_size: 5}\n"
        "    - maxpool2d\n"
        "    - conv2d: 8\n"
        "    - flatten\n"
    )
    with pytest.raises(ShapeError) as caught:
        build_model(_specs(layer_lines), torch.randn(4, 1, 8, 8))
    message = str(caught.value)
    assert "model.layers.2" in message
    assert "conv2d" in message
    assert "(6, 2, 2)" in message  # the shape that reached it
    assert "model.layers.0" not in message
    assert "model.layers.1" not in message


def test_shape_error_after_flatten_mentions_data_shape() -> None:
    layer_lines = "    - flatten\n    - dense: 10\n    - conv2d: 4\n"
    with pytest.raises(ShapeError) as caught:
        build_model(_specs(layer_lines), torch.randn(4, 1, 8, 8))
    message = str(caught.value)
    assert "model.layers.2" in message
    assert "(10,)" in message
    assert "data.shape" in message
