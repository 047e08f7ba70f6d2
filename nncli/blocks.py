"""Layers that hold layers (`residual`, `parallel`, a `block` of model.blocks used by name)
and the global poolings that end such networks. Torch-free at import, like layers.py:
engine/model builds each nested list through `Nest`, so every inner layer's input size is
inferred and every inner mistake is named by its path through the blocks."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol

from pydantic import Field, GetPydanticSchema, PrivateAttr, WrapValidator
from pydantic_core import PydanticCustomError

from nncli.layers import LayerInfo, LayerShapeError, Shape, layers
from nncli.registry import Params

if TYPE_CHECKING:
    from torch import nn

Key = tuple[str | int, ...]

# --- the recursive layer list -------------------------------------------------------------

# bound by config/model.py on every refresh: one layer item's annotation, and the wrap
# validator of a layer list (Keras's `{conv2d: 8, activation: relu}` split in two)
_item: Any = None
_sugar: Any = None


def bind(annotation: Any, sugar: Any) -> None:
    """Make nested lists take `annotation` (the layer union with its shorthand forms)."""
    global _item, _sugar
    _item, _sugar = annotation, sugar


def _item_schema(source: Any, handler: Any) -> Any:
    return handler(Any if _item is None else _item)


def _split(value: Any, handler: Any) -> Any:
    return handler(value) if _sugar is None else _sugar(value, handler)


LayerItem = Annotated[Any, GetPydanticSchema(_item_schema)]  # resolved when a model is built
LayerList = Annotated[list[LayerItem], Field(min_length=1), WrapValidator(_split)]


def inner(spec: Any) -> list[tuple[Key, Sequence[Any]]]:
    """The layer lists a layer holds, each with its key inside the layer (block references
    aside: their layers are model.blocks')."""
    if isinstance(spec, Residual):
        return [(("residual", "layers"), spec.layers)]
    if isinstance(spec, Parallel):
        return [(("parallel", "branches", i), b) for i, b in enumerate(spec.branches)]
    return []


# --- block names of the file being validated ----------------------------------------------

_defined: ContextVar[tuple[str, ...]] = ContextVar("blocks", default=())


@contextmanager
def defined(names: Sequence[str]) -> Iterator[None]:
    """While validating a model section: `names` are its blocks, usable as layers."""
    token = _defined.set(tuple(names))
    try:
        yield
    finally:
        _defined.reset(token)


def defined_names() -> list[str]:
    return list(_defined.get())


def reference(name: str, arg: Any) -> dict[str, Any] | None:
    """`basic`, `basic: null` or `basic: {repeat: 2}` as the `block` entry, where `basic` is
    a block of the model being validated; None for any other name."""
    if name not in _defined.get():
        return None
    if arg is None:
        return {"type": "block", "name": name}
    if isinstance(arg, dict) and "name" not in arg:
        return {"type": "block", "name": name, **arg}
    raise PydanticCustomError(
        "block_value",
        "block '{name}' is used as `{name}` or `{name}: {{repeat: N}}`",
        {"name": name},
    )


# --- entries --------------------------------------------------------------------------------


class Nest(Protocol):
    """What engine/model gives a layer that holds layers: building a nested list."""

    def __call__(self, specs: Sequence[Any], shape: Shape, key: Key) -> tuple[nn.Module, Shape]:
        """The layers `specs` (at `key` in the spec) as one module, and its output shape."""
        ...


class Residual(Params):
    """output = layers(x) + x."""

    layers: LayerList
    projection: Literal["auto", "none"] = Field(
        default="auto",
        description="auto: a 1x1 convolution (a linear map for vectors) where the layers "
        "change the shape; none: shapes must match",
    )


class Parallel(Params):
    branches: list[LayerList] = Field(min_length=2, description="lists of layers, same input")
    merge: Literal["concat", "add"] = Field(
        default="concat", description="concat: along channels (features); add: equal shapes"
    )


class Block(Params):
    name: str = Field(description="a key of model.blocks")
    repeat: int = Field(default=1, ge=1, description="times in a row")
    # the block's validated layers, set by config/model.py (not written to config.yaml)
    _layers: list[Any] = PrivateAttr(default_factory=list)

    def layers(self) -> list[Any]:
        return self._layers


NESTED = LayerInfo(nested=True)


@layers.register("residual", params=Residual, positional="layers", info=NESTED)
def residual(p: Residual, shape: Shape, nest: Nest) -> nn.Module:
    """output = layers(x) + x, through a projection (1x1 conv) where the layers change the
    shape: a ResNet's skip connection."""
    from nncli.modules import Residual as Module

    body, out = nest(p.layers, shape, ("residual", "layers"))
    if out == shape:
        return Module(body)
    if p.projection == "none":
        raise LayerShapeError(
            f"residual: its layers turn {shape} into {out}, and projection is none; make "
            "them keep the shape, or set projection: auto"
        )
    return Module(body, _projection(shape, out))


def _projection(shape: Shape, out: Shape) -> nn.Module:
    """A linear map of the input to `out`: 1x1 convolution, strided to the output's size."""
    from torch import nn

    if len(shape) != len(out):
        raise LayerShapeError(
            f"residual: its layers turn {shape} into {out}, a different number of "
            "dimensions, which no projection maps; keep flatten out of a residual"
        )
    if len(shape) == 1:
        return nn.Linear(shape[0], out[0], bias=False)
    strides = {-(-size // o) for size, o in zip(shape[1:], out[1:], strict=True) if o > 0}
    stride = strides.pop() if len(strides) == 1 else 0
    if stride < 1 or any(
        (s - 1) // stride + 1 != o for s, o in zip(shape[1:], out[1:], strict=True)
    ):
        raise LayerShapeError(
            f"residual: its layers turn {shape} into {out}, which no strided 1x1 "
            "convolution maps; shrink every dimension by the same whole factor"
        )
    conv = nn.Conv1d if len(shape) == 2 else nn.Conv2d
    if len(shape) > 3:
        raise LayerShapeError(f"residual: no projection for inputs shaped {shape}")
    return conv(shape[0], out[0], 1, stride=stride, bias=False)


@layers.register("parallel", params=Parallel, positional="branches", info=NESTED)
def parallel(p: Parallel, shape: Shape, nest: Nest) -> nn.Module:
    """Branches that each take the input; their outputs concatenated along channels (or
    features) or added: an Inception module."""
    from nncli.modules import Parallel as Module

    built = [nest(b, shape, ("parallel", "branches", i)) for i, b in enumerate(p.branches)]
    shapes = [out for _, out in built]
    if p.merge == "add" and len(set(shapes)) > 1:
        raise LayerShapeError(f"parallel: merge add needs equal shapes; {_listed(shapes)}")
    if p.merge == "concat" and len({(len(s), s[1:]) for s in shapes}) > 1:
        raise LayerShapeError(
            "parallel: merge concat joins along the first dimension and needs the others "
            f"equal; {_listed(shapes)}"
        )
    return Module([module for module, _ in built], p.merge)


def _listed(shapes: list[Shape]) -> str:
    return ", ".join(f"branch {i} gives {s}" for i, s in enumerate(shapes))


@layers.register("block", params=Block, positional="name", info=NESTED)
def block(p: Block, shape: Shape, nest: Nest) -> nn.Module:
    """A block of model.blocks by name (`basic`, `basic: {repeat: 2}`), repeat times."""
    from torch import nn

    parts = []
    for _ in range(p.repeat):
        module, shape = nest(p.layers(), shape, ("model", "blocks", p.name))
        parts.append(module)
    return parts[0] if p.repeat == 1 else nn.Sequential(*parts)


def _global(kind: str, shape: Shape) -> None:
    if len(shape) < 2:
        raise LayerShapeError(
            f"{kind} pools each channel over space (or time) and needs (channels, ...) "
            f"samples, got {shape}; it follows a conv layer"
        )


class GlobalPool(Params):
    over: Literal["channels", "time"] = Field(
        default="channels",
        description="channels: (C, ...) samples, each channel over every later dimension; "
        "time: (time, features) sequences over time, padded (all-zero) steps skipped",
        exclude_if=lambda over: over == "channels",  # config.yaml as before sequences
    )


@layers.register("global_avg_pool", params=GlobalPool, info=LayerInfo(keeps_linear=True))
def global_avg_pool(p: GlobalPool, shape: Shape) -> nn.Module:
    """The mean of each channel over space (or time): (C, H, W) -> (C,); over: time,
    (T, F) -> (F,)."""
    from nncli.modules import GlobalPool as Module

    _global("global_avg_pool", shape)
    return Module("mean", p.over)


@layers.register("global_max_pool", params=GlobalPool, info=LayerInfo())
def global_max_pool(p: GlobalPool, shape: Shape) -> nn.Module:
    """The largest value of each channel over space (or time): (C, H, W) -> (C,); over:
    time, (T, F) -> (F,)."""
    from nncli.modules import GlobalPool as Module

    _global("global_max_pool", shape)
    return Module("max", p.over)
