"""Builds the nn.Module of a layer list, inferring each layer's input size from the data.

Layers are built in order while one real batch flows through them (a dry forward), so a
shape that does not fit is caught here and named with its layer and shapes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from nncli.config.spec import LayerSpec
from nncli.errors import NncliError, first_line
from nncli.layers import LayerShapeError, layers


class ShapeError(NncliError):
    """The layer stack does not fit the data."""


def describe(layer: LayerSpec) -> str:
    """`dense(units=16)`: how a layer reads in messages and summaries."""
    values = layer.model_dump(exclude={"type"})
    params = ", ".join(f"{k}={v}" for k, v in values.items())
    return f"{layer.type}({params})" if params else layer.type


def build_model(
    specs: Sequence[LayerSpec], sample: torch.Tensor
) -> tuple[nn.Sequential, list[tuple[int, ...]]]:
    """The model for `specs`, and the shape each layer outputs for one sample.

    `sample` is a small batch of real inputs (two or more rows, for batch norm); the model
    is returned in training mode on the sample's device.
    """
    modules: list[nn.Module] = []
    shapes: list[tuple[int, ...]] = []
    x = sample
    for i, spec in enumerate(specs):
        shape = tuple(x.shape[1:])
        name = f"model.layers.{i} ({describe(spec)})"
        try:
            module = layers.get(spec.type).build(spec, shape)
        except (LayerShapeError, ValueError) as exc:
            raise ShapeError(f"{name}: {exc}") from None
        module = module.to(sample.device)
        module.eval()
        try:
            with torch.no_grad():
                x = module(x)
        except RuntimeError as exc:
            reason = first_line(exc)
            raise ShapeError(f"{name} cannot take input of shape {shape}: {reason}") from None
        modules.append(module)
        shapes.append(tuple(x.shape[1:]))
    model = nn.Sequential(*modules)
    model.train()
    return model, shapes


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def summary(
    specs: Sequence[LayerSpec], model: nn.Sequential, shapes: Sequence[tuple[int, ...]]
) -> list[dict[str, Any]]:
    """One row per layer: index, layer, output shape, parameter count."""
    return [
        {
            "#": i,
            "layer": describe(spec),
            "output": "x".join(str(d) for d in shape),
            "params": count_parameters(module),
        }
        for i, (spec, module, shape) in enumerate(zip(specs, model, shapes, strict=True))
    ]
