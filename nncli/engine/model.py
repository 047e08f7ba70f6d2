"""Builds the nn.Module of a layer list, inferring each layer's input size from the data.

Layers are built in order while one real batch flows through them (a dry forward), so a
shape that does not fit is caught here and named with its layer and shapes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn

from nncli.blocks import Nest
from nncli.config.model import ModelSpec, where
from nncli.config.spec import LayerSpec, Spec
from nncli.errors import NncliError, first_line
from nncli.layers import LayerShapeError, Shape, layers


class ShapeError(NncliError):
    """The layer stack does not fit the data."""


def describe(layer: LayerSpec) -> str:
    """`dense(units=16)`: how a layer reads in messages and summaries (a layer that holds
    layers without them: `residual(projection=auto)`, `block(name=basic, repeat=2)`)."""
    values = layer.model_dump(exclude={"type"})
    if layers.get(layer.type).info.nested:
        values = {k: v for k, v in values.items() if not isinstance(v, list)}
    params = ", ".join(f"{k}={v}" for k, v in values.items())
    return f"{layer.type}({params})" if params else layer.type


Key = tuple[str | int, ...]


class _Builder:
    """Builds layers while a batch flows through them; a layer that holds layers builds
    its lists through `nest`, and a mistake anywhere is named by the path that leads to it
    (and its place in the file, where the spec was read from one)."""

    def __init__(self, model: ModelSpec | None) -> None:
        self.model = model

    def layer(
        self, spec: LayerSpec, x: torch.Tensor, key: Key, path: tuple[str, ...]
    ) -> tuple[nn.Module, torch.Tensor]:
        shape = tuple(x.shape[1:])
        path = (*path, f"{'.'.join(map(str, key))} ({describe(spec)})")
        entry = layers.get(spec.type)
        try:
            if entry.info.nested:
                module = entry.build(spec, shape, self._nest(x, key, path))
            else:
                module = entry.build(spec, shape)
        except (LayerShapeError, ValueError) as exc:
            raise ShapeError(self._named(key, path, f": {exc}")) from None
        module = module.to(x.device)
        module.eval()
        try:
            with torch.no_grad():
                y = module(x)
        except RuntimeError as exc:
            reason = f" cannot take input of shape {shape}: {first_line(exc)}"
            raise ShapeError(self._named(key, path, reason)) from None
        return module, y

    def _nest(self, x: torch.Tensor, at: Key, path: tuple[str, ...]) -> Nest:
        def nest(specs: Sequence[Any], shape: Shape, key: Key) -> tuple[nn.Module, Shape]:
            inner = key if key[:1] == ("model",) else (*at, *key)
            h = x if tuple(x.shape[1:]) == shape else x.new_zeros((len(x), *shape))
            modules = []
            for i, spec in enumerate(specs):
                module, h = self.layer(spec, h, (*inner, i), path)
                modules.append(module)
            return nn.Sequential(*modules), tuple(h.shape[1:])

        return nest

    def _named(self, key: Key, path: tuple[str, ...], reason: str) -> str:
        """`FILE:LINE:COL  KEY  layer(...): reason` as every located error reads; a layer
        inside blocks gives the path that leads to it: `model.layers.2 (block(...)) >
        model.blocks.basic.0 (...) > ...: reason`."""
        place = where(self.model, key) if self.model is not None else None
        name = ".".join(map(str, key))
        text = " > ".join(path) + reason
        if len(path) == 1:  # the key is said once, by the location
            text = path[0].removeprefix(f"{name} (").removesuffix(")") + reason
        return f"{place}  {name}  {text}" if place else " > ".join(path) + reason


def build_model(
    specs: ModelSpec | Sequence[LayerSpec], sample: torch.Tensor
) -> tuple[nn.Sequential, list[tuple[int, ...]]]:
    """The model for `specs` (a model section, or a list of layers), and the shape each
    layer outputs for one sample.

    `sample` is a small batch of real inputs (two or more rows, for batch norm); the model
    is returned in training mode on the sample's device.
    """
    model_spec = specs if isinstance(specs, ModelSpec) else None
    stack: Sequence[LayerSpec] = specs.layers if isinstance(specs, ModelSpec) else specs
    builder = _Builder(model_spec)
    modules: list[nn.Module] = []
    shapes: list[tuple[int, ...]] = []
    x = sample
    for i, spec in enumerate(stack):
        module, x = builder.layer(spec, x, ("model", "layers", i), ())
        modules.append(module)
        shapes.append(tuple(x.shape[1:]))
    model = nn.Sequential(*modules)
    model.train()
    return model, shapes


def with_vocabulary(spec: Spec, x: torch.Tensor) -> Spec:
    """`spec` with the vocabulary of an `embedding` that starts model.layers filled from
    the inputs `x` (every row: the largest id + 1), so that config.yaml records it and a
    trained run builds without its data; ids that are no whole numbers >= 0, or that a
    given vocab does not hold, are refused at the layer."""
    first = spec.model.layers[0]
    if first.type != "embedding":
        return spec
    key = "model.layers.0"
    bad = (x < 0) | (x != x.round())
    if bool(bad.any()):
        raise NncliError(
            f"embedding takes token ids, whole numbers 0 and up (0 is padding), but the "
            f"inputs hold {float(x[bad][0]):g}; give the data as integer ids (N, T)",
            key=key,
        )
    top = int(x.max()) + 1 if x.numel() else 1
    vocab = getattr(first, "vocab", None)
    if vocab is not None:
        if top > vocab:
            raise NncliError(
                f"embedding: vocab {vocab} takes ids 0..{vocab - 1}, but the inputs hold id "
                f"{top - 1}; set vocab: {top} or more, or leave vocab out to infer it",
                key=key,
            )
        return spec
    filled = first.model_copy(update={"vocab": max(top, 2)})
    model = spec.model.model_copy(update={"layers": [filled, *spec.model.layers[1:]]})
    return spec.model_copy(update={"model": model})


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


def built_layers(
    specs: Sequence[LayerSpec], modules: Sequence[nn.Module], key: Key, via: tuple[str, ...] = ()
) -> Iterator[tuple[str, LayerSpec, nn.Module]]:
    """Every layer of `specs` with the module built for it, and those inside a residual,
    parallel or block after it, each named as build errors name it: `model.layers.2`,
    `model.layers.2.residual.layers.1`, `model.layers.3 (block(...)) > model.blocks.b.0`."""
    from nncli.blocks import Block, Parallel, Residual

    for i, (spec, module) in enumerate(zip(specs, modules, strict=True)):
        at = (*key, i)
        name = ".".join(map(str, at))
        yield " > ".join((*via, name)), spec, module
        if isinstance(spec, Residual):
            yield from built_layers(
                spec.layers, list(module.body), (*at, "residual", "layers"), via
            )
        elif isinstance(spec, Parallel):
            for b, branch in enumerate(spec.branches):
                inner = list(module.branches[b])
                yield from built_layers(branch, inner, (*at, "parallel", "branches", b), via)
        elif isinstance(spec, Block):
            repeats = [module] if spec.repeat == 1 else list(module)
            within = (*via, f"{name} ({describe(spec)})")
            for rep in repeats:
                block = ("model", "blocks", spec.name)
                yield from built_layers(spec.layers(), list(rep), block, within)
