"""Torch modules that torch itself does not provide (imported only when a model is built)."""

from __future__ import annotations

import torch
from torch import nn


class Step(nn.Module):
    """Heaviside step: 1.0 where x > 0, else 0.0.

    Its true derivative is zero (undefined at 0), which would stop every gradient. The
    backward pass is therefore straight-through (the identity), as in binary networks:
    with the `perceptron` loss, whose gradient at the output is (y - t), one SGD step on a
    single neuron is exactly Rosenblatt's rule w += lr (t - y) x.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x - x.detach() is exactly 0 (for finite x) but carries x's gradient. Plain tensor
        # ops, one graph with or without gradients: tracing, torch.export and ONNX take it
        return (x > 0).to(x.dtype) + (x - x.detach())


class PerceptronLoss(nn.Module):
    """The perceptron rule as a loss on 0/1 outputs y (of a `step`) and 0/1 targets t.

    Its value is the fraction misclassified, mean |y - t|; its gradient with respect to y
    is (y - t) / n. Through the straight-through step and a dense layer, plain SGD then
    updates w += lr (t - y) x / n: Rosenblatt's rule (exactly, with batch_size 1).
    """

    def forward(self, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        error = (y - t).detach()
        # y - y.detach() is zero in value but carries y's gradient, scaled by the error
        return (error.abs() + error * (y - y.detach())).mean()


class PositiveWeightedBCE(nn.BCELoss):
    """BCELoss with positives weighted per output column, as BCEWithLogitsLoss's
    pos_weight does: -(w t log p + (1 - t) log(1 - p)), logs clamped at -100 like torch."""

    def __init__(self, pos_weight: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        pos_weight: torch.Tensor = self.pos_weight  # type: ignore[assignment]
        w = pos_weight * t + (1 - t)
        return nn.functional.binary_cross_entropy(p, t, weight=w)


class Residual(nn.Module):
    """body(x) + x, or body(x) + projection(x) where the body changes the shape."""

    def __init__(self, body: nn.Module, projection: nn.Module | None = None) -> None:
        super().__init__()
        self.body = body
        self.projection = projection

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = x if self.projection is None else self.projection(x)
        out: torch.Tensor = self.body(x) + skip
        return out


class Parallel(nn.Module):
    """Branches that each take the same input, merged by concatenating their outputs along
    the first dimension after the batch (channels, features) or by adding them."""

    def __init__(self, branches: list[nn.Module], merge: str) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)
        self.merge = merge

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs: list[torch.Tensor] = [branch(x) for branch in self.branches]
        if self.merge == "concat":
            return torch.cat(outs, dim=1)
        total = outs[0]
        for out in outs[1:]:
            total = total + out
        return total


class GlobalPool(nn.Module):
    """The mean (or max) of each channel over every dimension after it: (N, C, ...) ->
    (N, C), whatever the number of spatial (or time) dimensions."""

    def __init__(self, reduce: str) -> None:
        super().__init__()
        self.reduce = reduce

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(2)
        out: torch.Tensor = flat.amax(dim=2) if self.reduce == "max" else flat.mean(dim=2)
        return out
