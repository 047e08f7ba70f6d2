"""Torch modules that torch itself does not provide (imported only when a model is built)."""

from __future__ import annotations

import torch
from torch import nn


class Step(nn.Module):
    """Heaviside step: 1.0 where x > 0, else 0.0. Its gradient is zero everywhere."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x > 0).to(x.dtype)
