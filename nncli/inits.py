"""Weight initialisation of the layers with weights (`init:` and `bias_init:` of dense
and conv): each entry fills a weight tensor in place with one torch.nn.init function."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from nncli.config.entries import entry_annotation
from nncli.registry import NoParams, Params, Registry

if TYPE_CHECKING:
    from collections.abc import Callable

    import torch
    from torch import nn

# `init:` of a layer with weights: each entry fills a weight tensor in place with one
# torch.nn.init function, drawing from torch's default generator, which prepare seeds with
# the run's seed before the model is built (so a run is reproducible; resume restores the
# weights from its checkpoint)
inits: Registry[Callable[..., None]] = Registry("init", key="name")


@inits.register("default")
def default_init(p: NoParams, weight: torch.Tensor) -> None:
    """torch's own initialisation of the layer (kaiming_uniform with a=sqrt(5))."""


@inits.register("zeros")
def zeros(p: NoParams, weight: torch.Tensor) -> None:
    """Every weight 0 (every unit then learns the same thing: for single neurons)."""
    from torch import nn

    nn.init.zeros_(weight)


class Normal(Params):
    std: float = Field(default=0.01, gt=0, description="standard deviation")
    mean: float = 0.0


@inits.register("normal", params=Normal, positional="std")
def normal(p: Normal, weight: torch.Tensor) -> None:
    """Normal(mean, std) weights, std 0.01 by default (numpy's `0.01 * randn`)."""
    from torch import nn

    nn.init.normal_(weight, p.mean, p.std)


class Uniform(Params):
    a: float = Field(default=-0.05, description="lower bound")
    b: float = Field(default=0.05, description="upper bound")

    @model_validator(mode="after")
    def _ordered(self) -> Uniform:
        if self.a >= self.b:
            raise ValueError(f"uniform needs a < b, got a={self.a}, b={self.b}")
        return self


@inits.register("uniform", params=Uniform)
def uniform(p: Uniform, weight: torch.Tensor) -> None:
    """Uniform(a, b) weights, -0.05..0.05 by default."""
    from torch import nn

    nn.init.uniform_(weight, p.a, p.b)


class Gain(Params):
    gain: float = Field(default=1.0, gt=0, description="scale, e.g. 5/3 before tanh")


@inits.register("xavier_uniform", "glorot_uniform", params=Gain, positional="gain")
def xavier_uniform(p: Gain, weight: torch.Tensor) -> None:
    """Glorot's uniform: variance 2 / (fan_in + fan_out), times gain squared."""
    from torch import nn

    nn.init.xavier_uniform_(weight, p.gain)


@inits.register("xavier_normal", "glorot_normal", params=Gain, positional="gain")
def xavier_normal(p: Gain, weight: torch.Tensor) -> None:
    """Glorot's normal: variance 2 / (fan_in + fan_out), times gain squared."""
    from torch import nn

    nn.init.xavier_normal_(weight, p.gain)


class Kaiming(Params):
    nonlinearity: Literal["relu", "leaky_relu", "linear", "tanh", "sigmoid", "selu"] = Field(
        default="relu", description="the activation after the layer (sets the gain)"
    )
    a: float = Field(default=0.0, ge=0, description="leaky_relu's negative slope")
    mode: Literal["fan_in", "fan_out"] = "fan_in"


@inits.register("kaiming_uniform", "he_uniform", params=Kaiming, positional="nonlinearity")
def kaiming_uniform(p: Kaiming, weight: torch.Tensor) -> None:
    """He's uniform: variance gain^2 / fan_in, for relu networks."""
    from torch import nn

    nn.init.kaiming_uniform_(weight, p.a, p.mode, p.nonlinearity)


@inits.register("kaiming_normal", "he_normal", params=Kaiming, positional="nonlinearity")
def kaiming_normal(p: Kaiming, weight: torch.Tensor) -> None:
    """He's normal: variance gain^2 / fan_in, for relu networks."""
    from torch import nn

    nn.init.kaiming_normal_(weight, p.a, p.mode, p.nonlinearity)


@inits.register("orthogonal", params=Gain, positional="gain")
def orthogonal(p: Gain, weight: torch.Tensor) -> None:
    """A (semi-)orthogonal weight matrix, times gain."""
    from torch import nn

    nn.init.orthogonal_(weight, p.gain)


if TYPE_CHECKING:

    class InitSpec(Params):
        name: str

else:
    InitSpec = entry_annotation(inits)


def _unset(value: object) -> bool:
    return value is None


# the two fields of every layer with weights, declared in each after its own parameters
# (so `dense(units=8, bias=True, init=...)` reads in order); left out, torch's default,
# and both stay out of config.yaml, so runs from before `init` existed resume unchanged
def init_field() -> Any:
    return Field(
        default=None,
        description="how the weights start: he_normal, {normal: 0.01}, ...; default: torch's",
        exclude_if=_unset,
    )


def bias_init_field() -> Any:
    return Field(
        default=None,
        description="every bias starts at this value; default: 0 where init is given",
        exclude_if=_unset,
    )


class Weighted(Params):
    """A layer with weights, whose `init_field()` and `bias_init_field()` its subclass
    declares (a field declared here would come before the layer's own)."""

    @model_validator(mode="after")
    def _bias_init_needs_a_bias(self) -> Weighted:
        if getattr(self, "bias_init", None) is not None and not getattr(self, "bias", True):
            raise ValueError("bias_init needs a bias: leave bias_init out, or set bias: true")
        return self


def initialised(module: nn.Module, init: InitSpec | None, bias_init: float | None) -> nn.Module:
    """`module` (built with torch's initialisation) with `init`'s weights and `bias_init`'s
    biases drawn over it, in that order, from torch's default generator."""
    from torch import nn

    if init is not None:
        inits.get(init.name).build(init, module.weight)
    bias = module.bias
    if isinstance(bias, nn.Parameter):
        if bias_init is not None:
            nn.init.constant_(bias, bias_init)
        elif init is not None and init.name != "default":
            nn.init.zeros_(bias)
    return module
