"""Optimizer entries: each builds a torch optimizer over the model's parameters."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Annotated

from pydantic import Field, model_validator

from nncli.registry import Params, Registry

if TYPE_CHECKING:
    import torch

optimizers: Registry[Callable[..., torch.optim.Optimizer]] = Registry("optimizer", key="name")


class Optim(Params):
    lr: float = Field(default=1e-3, gt=0, description="learning rate")
    weight_decay: float = Field(default=0.0, ge=0)


class SGD(Optim):
    lr: float = Field(default=0.01, gt=0, description="learning rate")
    momentum: float = Field(default=0.0, ge=0, lt=1)
    nesterov: bool = False
    dampening: float = Field(default=0.0, ge=0, le=1)

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self) -> SGD:
        if self.nesterov and (self.momentum == 0 or self.dampening != 0):
            raise ValueError("nesterov needs momentum > 0 and dampening 0")
        return self


@optimizers.register("sgd", params=SGD)
def sgd(p: SGD, parameters: Iterable[torch.Tensor]) -> torch.optim.Optimizer:
    """Stochastic gradient descent, with optional (Nesterov) momentum."""
    import torch

    return torch.optim.SGD(
        parameters,
        lr=p.lr,
        momentum=p.momentum,
        nesterov=p.nesterov,
        dampening=p.dampening,
        weight_decay=p.weight_decay,
    )


Beta = Annotated[float, Field(ge=0, lt=1)]


class Adam(Optim):
    betas: tuple[Beta, Beta] = Field(default=(0.9, 0.999), strict=False)
    eps: float = Field(default=1e-8, gt=0)
    amsgrad: bool = False


@optimizers.register("adam", params=Adam)
def adam(p: Adam, parameters: Iterable[torch.Tensor]) -> torch.optim.Optimizer:
    """Adam: adaptive moments (weight_decay is L2 added to the gradient)."""
    import torch

    return torch.optim.Adam(
        parameters,
        lr=p.lr,
        betas=p.betas,
        eps=p.eps,
        weight_decay=p.weight_decay,
        amsgrad=p.amsgrad,
    )


class AdamW(Adam):
    weight_decay: float = Field(default=0.01, ge=0)


@optimizers.register("adamw", params=AdamW)
def adamw(p: AdamW, parameters: Iterable[torch.Tensor]) -> torch.optim.Optimizer:
    """Adam with decoupled weight decay."""
    import torch

    return torch.optim.AdamW(
        parameters,
        lr=p.lr,
        betas=p.betas,
        eps=p.eps,
        weight_decay=p.weight_decay,
        amsgrad=p.amsgrad,
    )


class RMSprop(Optim):
    lr: float = Field(default=0.01, gt=0, description="learning rate")
    alpha: float = Field(default=0.99, gt=0, lt=1)
    momentum: float = Field(default=0.0, ge=0, lt=1)
    eps: float = Field(default=1e-8, gt=0)


@optimizers.register("rmsprop", params=RMSprop)
def rmsprop(p: RMSprop, parameters: Iterable[torch.Tensor]) -> torch.optim.Optimizer:
    """RMSprop: divides by a running average of squared gradients."""
    import torch

    return torch.optim.RMSprop(
        parameters,
        lr=p.lr,
        alpha=p.alpha,
        eps=p.eps,
        momentum=p.momentum,
        weight_decay=p.weight_decay,
    )


class Adagrad(Optim):
    lr: float = Field(default=0.01, gt=0, description="learning rate")
    eps: float = Field(default=1e-10, gt=0)


@optimizers.register("adagrad", params=Adagrad)
def adagrad(p: Adagrad, parameters: Iterable[torch.Tensor]) -> torch.optim.Optimizer:
    """Adagrad: per-parameter rates from the sum of squared gradients."""
    import torch

    return torch.optim.Adagrad(parameters, lr=p.lr, eps=p.eps, weight_decay=p.weight_decay)
