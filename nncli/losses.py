"""Loss entries. Each declares what its targets are and what it expects of the model's
output, from which the task (regression, binary, multiclass, multilabel) follows."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, model_validator

from nncli.registry import NoParams, Params, Registry

if TYPE_CHECKING:
    import torch
    from torch import nn

# per-class weights: one positive number per class, or balanced (from the train split)
ClassWeights = Literal["balanced"] | list[Annotated[float, Field(gt=0)]] | None
WEIGHT_HELP = (
    "per class: a list (one per class; for bce, bce_with_logits: the weight of positives "
    "per output), or balanced: n_samples / (n_classes * count) in the train split"
)


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


class BCEWeights(Params):
    weight: ClassWeights = Field(default=None, description=WEIGHT_HELP)


@losses.register(
    "bce",
    params=BCEWeights,
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
def bce(p: BCEWeights) -> nn.Module:
    """Binary cross-entropy of probabilities (end the model with sigmoid)."""
    from torch import nn

    if isinstance(p.weight, list):
        from nncli.modules import PositiveWeightedBCE

        return PositiveWeightedBCE(_tensor(p.weight))
    return nn.BCELoss()


class BCEWithLogits(BCEWeights):
    pos_weight: float | None = Field(default=None, gt=0, description="weight of positives")

    @model_validator(mode="after")
    def _one_weight(self) -> BCEWithLogits:
        if self.pos_weight is not None and self.weight is not None:
            raise ValueError("give pos_weight or weight, not both")
        return self


@losses.register(
    "bce_with_logits",
    params=BCEWithLogits,
    info=LossInfo("binary", "logits", applies="sigmoid"),
)
def bce_with_logits(p: BCEWithLogits) -> nn.Module:
    """Binary cross-entropy from logits (no final sigmoid; numerically stable)."""
    import torch
    from torch import nn

    if isinstance(p.weight, list):
        return nn.BCEWithLogitsLoss(pos_weight=_tensor(p.weight))
    weight = None if p.pos_weight is None else torch.tensor(p.pos_weight)
    return nn.BCEWithLogitsLoss(pos_weight=weight)


class CrossEntropy(Params):
    label_smoothing: float = Field(default=0.0, ge=0.0, lt=1.0)
    weight: ClassWeights = Field(default=None, description=WEIGHT_HELP)


@losses.register(
    "cross_entropy",
    "ce",
    params=CrossEntropy,
    info=LossInfo("index", "logits", applies="softmax"),
)
def cross_entropy(p: CrossEntropy) -> nn.Module:
    """Softmax cross-entropy from logits and integer class labels (no final softmax)."""
    from torch import nn

    weight = _tensor(p.weight) if isinstance(p.weight, list) else None
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=p.label_smoothing)


def _tensor(values: list[float]) -> torch.Tensor:
    import torch

    return torch.tensor(values, dtype=torch.float32)


def balanced(target: str, y: torch.Tensor, n_classes: int) -> list[float]:
    """Class weights from the train split's targets (a loss's LossInfo.target): n_samples /
    (n_classes * count) per class for class indices; for 0/1 targets (one column per
    output), the weight of
    positives relative to negatives, count(0) / count(1) per column (torch's pos_weight).
    A class absent from the split gets weight 1."""
    import torch

    if target == "index":
        counts = torch.bincount(y.long().reshape(-1), minlength=n_classes).double()
        weights = len(y) / (n_classes * counts)
    else:
        positives = y.reshape(len(y), -1).double().sum(0)
        weights = (len(y) - positives) / positives
    return [w if 0 < w < float("inf") else 1.0 for w in weights.tolist()]


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
