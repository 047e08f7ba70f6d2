"""Layer and activation entries: each builds one torch module from its parameters and the
shape of one input sample (without the batch dimension)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from nncli.errors import NncliError
from nncli.inits import InitSpec, Weighted, bias_init_field, init_field, initialised
from nncli.registry import NoParams, Params, Registry

if TYPE_CHECKING:
    from collections.abc import Callable

    from torch import nn

Shape = tuple[int, ...]


@dataclass(frozen=True)
class LayerInfo:
    """A layer's traits: what the lint, the checks before training, `nncli list` and the
    activation gallery need to know of it, so that none of them keeps a list of names."""

    activation: bool = False  # an activation function (the gallery draws it)
    affine: bool = False  # a linear map with weights (dense, conv): stacked, they compose
    keeps_linear: bool = False  # a linear map through it stays linear (pooling by average...)
    passes: Literal["values", "meaning"] | None = None  # leaves values (or their sense) as is
    output_range: str | None = None  # the range it squashes into, e.g. "(0, 1)"
    probabilities: bool = False  # its outputs stay within 0..1, as bce needs
    normalisation: bool = False  # normalises its input (batch or layer statistics)
    nested: bool = False  # holds layer lists (blocks.py); built with a Nest as third argument


layers: Registry[Callable[..., nn.Module]] = Registry("layer", key="type")


def info(name: str) -> LayerInfo:
    """The traits of a registered layer (or alias)."""
    found: LayerInfo = layers.get(name).info
    return found


def activations() -> list[str]:
    """The registered activations, in registration order."""
    return [e.name for e in layers.in_order() if e.info.activation]


class LayerShapeError(NncliError):
    """A layer cannot take the shape that reaches it; model.py adds which layer it is."""


def _dims(kind: str, shape: Shape, n: int, fix: str) -> None:
    if len(shape) != n:
        raise LayerShapeError(
            f"{kind} needs an input of {n} dimension(s) per sample, got {shape}; {fix}"
        )


def activation(
    name: str,
    *aliases: str,
    params: type[Params] | None = None,
    positional: str | None = None,
    **traits: Any,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register an activation: a layer that keeps the shape of its input."""
    return layers.register(
        name, *aliases, params=params, positional=positional, info=LayerInfo(True, **traits)
    )


# --- weighted layers --------------------------------------------------------------------


class Dense(Weighted):
    units: int = Field(gt=0, description="output features")
    bias: bool = True
    init: InitSpec | None = init_field()
    bias_init: float | None = bias_init_field()


@layers.register("dense", "linear", params=Dense, positional="units", info=LayerInfo(affine=True))
def dense(p: Dense, shape: Shape) -> nn.Module:
    """Fully connected layer: y = x W^T + b (input size inferred)."""
    from torch import nn

    _dims("dense", shape, 1, "add a `flatten` layer before it")
    return initialised(nn.Linear(shape[0], p.units, bias=p.bias), p.init, p.bias_init)


class Conv(Weighted):
    out_channels: int = Field(gt=0)
    kernel_size: int = Field(default=3, gt=0)
    stride: int = Field(default=1, gt=0)
    padding: int | Literal["same", "valid"] = 0
    dilation: int = Field(default=1, gt=0)
    bias: bool = True
    init: InitSpec | None = init_field()
    bias_init: float | None = bias_init_field()

    @model_validator(mode="after")
    def _same_needs_stride_one(self) -> Conv:
        if self.padding == "same" and self.stride != 1:
            raise ValueError(
                "padding 'same' needs stride 1 (torch pads strided convolutions by number)"
            )
        return self


@layers.register("conv1d", params=Conv, positional="out_channels", info=LayerInfo(affine=True))
def conv1d(p: Conv, shape: Shape) -> nn.Module:
    """1-D convolution over (channels, length) samples."""
    from torch import nn

    _dims("conv1d", shape, 2, "samples must be (channels, length); set data.shape")
    conv = nn.Conv1d(
        shape[0], p.out_channels, p.kernel_size, p.stride, p.padding, p.dilation, bias=p.bias
    )
    return initialised(conv, p.init, p.bias_init)


@layers.register("conv2d", params=Conv, positional="out_channels", info=LayerInfo(affine=True))
def conv2d(p: Conv, shape: Shape) -> nn.Module:
    """2-D convolution over (channels, height, width) samples."""
    from torch import nn

    _dims("conv2d", shape, 3, "samples must be (channels, height, width); set data.shape")
    conv = nn.Conv2d(
        shape[0], p.out_channels, p.kernel_size, p.stride, p.padding, p.dilation, bias=p.bias
    )
    return initialised(conv, p.init, p.bias_init)


class Pool(Params):
    kernel_size: int = Field(default=2, gt=0)
    stride: int | None = Field(default=None, gt=0, description="default: kernel_size")
    padding: int = Field(default=0, ge=0)


@layers.register("maxpool2d", params=Pool, positional="kernel_size", info=LayerInfo())
def maxpool2d(p: Pool, shape: Shape) -> nn.Module:
    """2-D max pooling."""
    from torch import nn

    _dims("maxpool2d", shape, 3, "it follows a conv2d layer")
    return nn.MaxPool2d(p.kernel_size, p.stride, p.padding)


@layers.register(
    "avgpool2d", params=Pool, positional="kernel_size", info=LayerInfo(keeps_linear=True)
)
def avgpool2d(p: Pool, shape: Shape) -> nn.Module:
    """2-D average pooling."""
    from torch import nn

    _dims("avgpool2d", shape, 3, "it follows a conv2d layer")
    return nn.AvgPool2d(p.kernel_size, p.stride, p.padding)


@layers.register("flatten", info=LayerInfo(keeps_linear=True, passes="values"))
def flatten(p: NoParams, shape: Shape) -> nn.Module:
    """Flattens each sample to a vector (for dense layers after convolutions)."""
    from torch import nn

    return nn.Flatten()


class Dropout(Params):
    p: float = Field(default=0.5, ge=0.0, lt=1.0, description="probability of zeroing")


@layers.register(
    "dropout",
    params=Dropout,
    positional="p",
    info=LayerInfo(keeps_linear=True, passes="meaning"),
)
def dropout(p: Dropout, shape: Shape) -> nn.Module:
    """Zeroes inputs with probability p while training (scaled by 1/(1-p))."""
    from torch import nn

    return nn.Dropout(p.p)


class BatchNorm(Params):
    eps: float = Field(default=1e-5, gt=0)
    momentum: float = Field(default=0.1, gt=0, le=1)


@layers.register(
    "batchnorm1d", params=BatchNorm, info=LayerInfo(keeps_linear=True, normalisation=True)
)
def batchnorm1d(p: BatchNorm, shape: Shape) -> nn.Module:
    """Batch normalisation over features (or channels of 1-D signals)."""
    from torch import nn

    if len(shape) not in (1, 2):
        raise LayerShapeError(f"batchnorm1d needs (features,) or (channels, length), got {shape}")
    return nn.BatchNorm1d(shape[0], eps=p.eps, momentum=p.momentum)


@layers.register(
    "batchnorm2d", params=BatchNorm, info=LayerInfo(keeps_linear=True, normalisation=True)
)
def batchnorm2d(p: BatchNorm, shape: Shape) -> nn.Module:
    """Batch normalisation over the channels of images."""
    from torch import nn

    _dims("batchnorm2d", shape, 3, "it follows a conv2d layer")
    return nn.BatchNorm2d(shape[0], eps=p.eps, momentum=p.momentum)


class LayerNorm(Params):
    eps: float = Field(default=1e-5, gt=0)
    elementwise_affine: bool = True


@layers.register("layernorm", params=LayerNorm, info=LayerInfo(normalisation=True))
def layernorm(p: LayerNorm, shape: Shape) -> nn.Module:
    """Layer normalisation over the last dimension."""
    from torch import nn

    return nn.LayerNorm(shape[-1], eps=p.eps, elementwise_affine=p.elementwise_affine)


# --- activations ------------------------------------------------------------------------


@activation("identity", keeps_linear=True, passes="values")
def identity(p: NoParams, shape: Shape) -> nn.Module:
    """f(x) = x: the linear output of a regression neuron."""
    from torch import nn

    return nn.Identity()


@activation("step", output_range="{0, 1}", probabilities=True)
def step(p: NoParams, shape: Shape) -> nn.Module:
    """Heaviside step: 1 where x > 0, else 0; the perceptron's output (straight-through
    gradient, so the `perceptron` loss trains it by Rosenblatt's rule)."""
    from nncli.modules import Step

    return Step()


@activation("sigmoid", output_range="(0, 1)", probabilities=True)
def sigmoid(p: NoParams, shape: Shape) -> nn.Module:
    """Logistic sigmoid 1/(1+e^-x): a probability for bce."""
    from torch import nn

    return nn.Sigmoid()


@activation("tanh", output_range="(-1, 1)")
def tanh(p: NoParams, shape: Shape) -> nn.Module:
    """Hyperbolic tangent, in (-1, 1)."""
    from torch import nn

    return nn.Tanh()


@activation("relu")
def relu(p: NoParams, shape: Shape) -> nn.Module:
    """max(0, x)."""
    from torch import nn

    return nn.ReLU()


class LeakyReLU(Params):
    negative_slope: float = Field(default=0.01, ge=0)


@activation("leaky_relu", params=LeakyReLU, positional="negative_slope")
def leaky_relu(p: LeakyReLU, shape: Shape) -> nn.Module:
    """x for x > 0, negative_slope * x otherwise."""
    from torch import nn

    return nn.LeakyReLU(p.negative_slope)


class ELU(Params):
    alpha: float = Field(default=1.0, gt=0)


@activation("elu", params=ELU, positional="alpha")
def elu(p: ELU, shape: Shape) -> nn.Module:
    """x for x > 0, alpha * (e^x - 1) otherwise."""
    from torch import nn

    return nn.ELU(p.alpha)


class GELU(Params):
    approximate: Literal["none", "tanh"] = "none"


@activation("gelu", params=GELU, positional="approximate")
def gelu(p: GELU, shape: Shape) -> nn.Module:
    """x * Phi(x), the Gaussian error linear unit."""
    from torch import nn

    return nn.GELU(approximate=p.approximate)


@activation("swish", "silu")
def swish(p: NoParams, shape: Shape) -> nn.Module:
    """x * sigmoid(x)."""
    from torch import nn

    return nn.SiLU()


class Softmax(Params):
    dim: int = Field(default=-1, description="dimension that sums to one")


@activation("softmax", params=Softmax, positional="dim", output_range="(0, 1)", probabilities=True)
def softmax(p: Softmax, shape: Shape) -> nn.Module:
    """e^x_i / sum_j e^x_j: class probabilities (cross_entropy wants logits instead)."""
    from torch import nn

    return nn.Softmax(dim=p.dim)


@activation("log_softmax", params=Softmax, positional="dim")
def log_softmax(p: Softmax, shape: Shape) -> nn.Module:
    """log of softmax: class log-probabilities, the input nll expects."""
    from torch import nn

    return nn.LogSoftmax(dim=p.dim)


# layers that hold layers, and sequence layers, registered here so that every user of the
# registry sees them
from nncli import blocks, sequence  # noqa: E402, F401
