"""Optimizer and learning-rate scheduler entries (built over the model's parameters)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

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

    params, fast = fused(parameters)
    return torch.optim.SGD(
        params,
        lr=p.lr,
        momentum=p.momentum,
        nesterov=p.nesterov,
        dampening=p.dampening,
        weight_decay=p.weight_decay,
        **fast,
    )


def fused(
    parameters: Iterable[torch.Tensor], devices: tuple[str, ...] = ("cpu", "cuda")
) -> tuple[list[torch.Tensor], dict[str, bool]]:
    """`(parameters, {"fused": True})` where torch has a fused kernel for all of them (float
    tensors on `devices`), else `(parameters, {})`: one kernel per tensor and step instead of
    a Python loop of small ops (bench/: the default Adam's loop was 42% of an MLP's CPU time).
    Fused and looped steps agree to rounding."""
    import torch

    params = list(parameters)
    ok = bool(params) and all(
        isinstance(q, torch.Tensor) and q.is_floating_point() and q.device.type in devices
        for q in params
    )
    return params, {"fused": True} if ok else {}


Beta = Annotated[float, Field(ge=0, lt=1)]


class Adam(Optim):
    betas: tuple[Beta, Beta] = Field(default=(0.9, 0.999), strict=False)
    eps: float = Field(default=1e-8, gt=0)
    amsgrad: bool = False


@optimizers.register("adam", params=Adam)
def adam(p: Adam, parameters: Iterable[torch.Tensor]) -> torch.optim.Optimizer:
    """Adam: adaptive moments (weight_decay is L2 added to the gradient)."""
    import torch

    return _adam_like(torch.optim.Adam, p, parameters)


def _adam_like(
    cls: type[torch.optim.Adam] | type[torch.optim.AdamW],
    p: Adam,
    parameters: Iterable[torch.Tensor],
) -> torch.optim.Optimizer:
    params, fast = fused(parameters)
    return cls(
        params,
        lr=p.lr,
        betas=p.betas,
        eps=p.eps,
        weight_decay=p.weight_decay,
        amsgrad=p.amsgrad,
        **fast,
    )


class AdamW(Adam):
    weight_decay: float = Field(default=0.01, ge=0)


@optimizers.register("adamw", params=AdamW)
def adamw(p: AdamW, parameters: Iterable[torch.Tensor]) -> torch.optim.Optimizer:
    """Adam with decoupled weight decay."""
    import torch

    return _adam_like(torch.optim.AdamW, p, parameters)


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

    params, fast = fused(parameters, devices=("cpu",))  # torch fuses Adagrad on CPUs only
    return torch.optim.Adagrad(params, lr=p.lr, eps=p.eps, weight_decay=p.weight_decay, **fast)


# --- learning-rate schedulers -------------------------------------------------------------


@dataclass(frozen=True)
class SchedulerInfo:
    # when the scheduler steps: after every batch, after every epoch, or after every epoch
    # with the monitored metric's value (reduce_on_plateau)
    step: Literal["batch", "epoch", "metric"]


schedulers: Registry[Callable[..., Any]] = Registry("scheduler", key="name")


class Step(Params):
    step_size: int = Field(default=10, gt=0, description="epochs between decays")
    gamma: float = Field(default=0.1, gt=0, le=1)


@schedulers.register("step", params=Step, info=SchedulerInfo("epoch"))
def step(p: Step, opt: torch.optim.Optimizer, epochs: int, batches: int) -> Any:
    """Multiply the learning rate by gamma every step_size epochs."""
    import torch

    return torch.optim.lr_scheduler.StepLR(opt, p.step_size, p.gamma)


class MultiStep(Params):
    milestones: list[Annotated[int, Field(gt=0)]] = Field(min_length=1, description="epochs")
    gamma: float = Field(default=0.1, gt=0, le=1)


@schedulers.register("multistep", params=MultiStep, info=SchedulerInfo("epoch"))
def multistep(p: MultiStep, opt: torch.optim.Optimizer, epochs: int, batches: int) -> Any:
    """Multiply the learning rate by gamma at each milestone epoch."""
    import torch

    return torch.optim.lr_scheduler.MultiStepLR(opt, p.milestones, p.gamma)


class Exponential(Params):
    gamma: float = Field(default=0.95, gt=0, le=1, description="factor per epoch")


@schedulers.register("exponential", params=Exponential, info=SchedulerInfo("epoch"))
def exponential(p: Exponential, opt: torch.optim.Optimizer, epochs: int, batches: int) -> Any:
    """Multiply the learning rate by gamma every epoch."""
    import torch

    return torch.optim.lr_scheduler.ExponentialLR(opt, p.gamma)


class Cosine(Params):
    warmup_epochs: int = Field(default=0, ge=0, description="linear ramp from lr/10")
    min_lr: float = Field(default=0.0, ge=0)


@schedulers.register("cosine", params=Cosine, info=SchedulerInfo("epoch"))
def cosine(p: Cosine, opt: torch.optim.Optimizer, epochs: int, batches: int) -> Any:
    """Cosine decay to min_lr over the run, after an optional linear warm-up."""
    import torch

    sched = torch.optim.lr_scheduler
    decay = sched.CosineAnnealingLR(opt, T_max=max(1, epochs - p.warmup_epochs), eta_min=p.min_lr)
    if p.warmup_epochs == 0:
        return decay
    warmup = sched.LinearLR(opt, start_factor=0.1, total_iters=p.warmup_epochs)
    return sched.SequentialLR(opt, [warmup, decay], milestones=[p.warmup_epochs])


class OneCycle(Params):
    max_lr: float | None = Field(default=None, gt=0, description="default: optimizer.lr")
    pct_start: float = Field(default=0.3, gt=0, lt=1, description="share of steps warming up")


@schedulers.register("onecycle", params=OneCycle, info=SchedulerInfo("batch"))
def onecycle(p: OneCycle, opt: torch.optim.Optimizer, epochs: int, batches: int) -> Any:
    """One cycle: up to max_lr, then down (steps every batch)."""
    import torch

    max_lr = p.max_lr or opt.param_groups[0]["lr"]
    return torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=max_lr, epochs=epochs, steps_per_epoch=batches, pct_start=p.pct_start
    )


class Plateau(Params):
    factor: float = Field(default=0.1, gt=0, lt=1)
    patience: int = Field(default=5, ge=0, description="epochs without improvement")
    min_lr: float = Field(default=0.0, ge=0)
    threshold: float = Field(default=1e-4, ge=0)


@schedulers.register("reduce_on_plateau", "plateau", params=Plateau, info=SchedulerInfo("metric"))
def reduce_on_plateau(p: Plateau, opt: torch.optim.Optimizer, epochs: int, batches: int) -> Any:
    """Lower the learning rate when the monitored metric stops improving."""
    import torch

    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt,
        mode="min",
        factor=p.factor,
        patience=p.patience,
        min_lr=p.min_lr,
        threshold=p.threshold,
    )
