"""Loss entries. Each declares what its targets are and what it expects of the model's
output, from which the task (regression, binary, multiclass, multilabel) follows."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from nncli.registry import NoParams, Params, Registry

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class LossInfo:
    # index: integer class labels; binary: 0/1 floats shaped like the output; value: floats
    target: Literal["index", "binary", "value"]
    # what the last layer must produce for this loss
    output: Literal["logits", "probabilities", "log_probabilities", "values"]
    # a logits loss: the squashing it applies itself (so the model must not)
    applies: str | None = None
    # a loss that wants a particular last layer: (that layer, what it gives, another way)
    ends_with: tuple[str, str, str | None] | None = None


losses: Registry[Callable[..., nn.Module]] = Registry("loss", key="name")

CLASSIFY = {"index", "binary"}


@losses.register("mse", "l2", info=LossInfo("value", "values"))
def mse(p: NoParams) -> nn.Module:
    """Mean squared error."""
    from torch import nn

    return nn.MSELoss()


@losses.register("mae", "l1", info=LossInfo("value", "values"))
def mae(p: NoParams) -> nn.Module:
    """Mean absolute error."""
    from torch import nn

    return nn.L1Loss()


class Huber(Params):
    delta: float = Field(default=1.0, gt=0, description="where quadratic turns linear")


@losses.register("huber", params=Huber, positional="delta", info=LossInfo("value", "values"))
def huber(p: Huber) -> nn.Module:
    """Quadratic for small errors, linear for large ones."""
    from torch import nn

    return nn.HuberLoss(delta=p.delta)


@losses.register(
    "bce",
    info=LossInfo(
        "binary",
        "probabilities",
        ends_with=(
            "sigmoid",
            "a probability from a final sigmoid",
            "or use loss: bce_with_logits",
        ),
    ),
)
def bce(p: NoParams) -> nn.Module:
    """Binary cross-entropy of probabilities (end the model with sigmoid)."""
    from torch import nn

    return nn.BCELoss()


class BCEWithLogits(Params):
    pos_weight: float | None = Field(default=None, gt=0, description="weight of positives")


@losses.register(
    "bce_with_logits",
    params=BCEWithLogits,
    info=LossInfo("binary", "logits", applies="sigmoid"),
)
def bce_with_logits(p: BCEWithLogits) -> nn.Module:
    """Binary cross-entropy from logits (no final sigmoid; numerically stable)."""
    import torch
    from torch import nn

    weight = None if p.pos_weight is None else torch.tensor(p.pos_weight)
    return nn.BCEWithLogitsLoss(pos_weight=weight)


class CrossEntropy(Params):
    label_smoothing: float = Field(default=0.0, ge=0.0, lt=1.0)


@losses.register(
    "cross_entropy",
    "ce",
    params=CrossEntropy,
    info=LossInfo("index", "logits", applies="softmax"),
)
def cross_entropy(p: CrossEntropy) -> nn.Module:
    """Softmax cross-entropy from logits and integer class labels (no final softmax)."""
    from torch import nn

    return nn.CrossEntropyLoss(label_smoothing=p.label_smoothing)


@losses.register(
    "nll",
    info=LossInfo(
        "index",
        "log_probabilities",
        ends_with=(
            "log_softmax",
            "log-probabilities from a final log_softmax",
            "or use cross_entropy",
        ),
    ),
)
def nll(p: NoParams) -> nn.Module:
    """Negative log-likelihood of log-probabilities (end the model with log_softmax)."""
    from torch import nn

    return nn.NLLLoss()


@losses.register(
    "perceptron",
    info=LossInfo(
        "binary", "probabilities", ends_with=("step", "0/1 outputs from a final step", None)
    ),
)
def perceptron(p: NoParams) -> nn.Module:
    """Rosenblatt's perceptron rule for a step output: the fraction misclassified."""
    from nncli.modules import PerceptronLoss

    return PerceptronLoss()
