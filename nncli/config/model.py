"""The model section: `layers`, and `blocks` (named layer lists used by name, with
`repeat`), validated as one recursive structure; and where in the file a layer of it is."""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import (
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from nncli import blocks as nested
from nncli.config import yamlio
from nncli.config.activations import relocated, split_activations
from nncli.config.entries import References, entry_annotation
from nncli.layers import layers
from nncli.registry import Params, UnknownName

BLOCK_PATTERN = r"^[a-z][a-z0-9_]*$"
BlockName = Annotated[str, Field(pattern=BLOCK_PATTERN)]


def _reference_schema() -> dict[str, Any]:
    """`basic: {repeat: 2}` (or `basic: null`): a one-key map whose key is no layer name.
    (A bare `basic` is valid too, but a schema cannot tell it from a misspelt layer.)"""
    repeat = {"type": "integer", "minimum": 1}
    args = {"type": "object", "properties": {"repeat": repeat}, "additionalProperties": False}
    return {
        "type": "object",
        "minProperties": 1,
        "maxProperties": 1,
        "propertyNames": {"pattern": BLOCK_PATTERN, "not": {"enum": layers.names()}},
        "additionalProperties": {"anyOf": [{"type": "null"}, args]},
    }


def layer_annotation() -> Any:
    """One item of a layer list: a layer, or a block of the file by name."""
    refs = References(nested.reference, nested.defined_names, _reference_schema())
    return entry_annotation(layers, refs)


def sugar(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """`{dense: 25, activation: relu}` (Keras's habit) becomes `dense: 25` then `relu`, in
    every layer list; each error is placed where the file says it."""
    if not isinstance(value, list):
        return handler(value)
    split, origin, errors = split_activations(value)
    try:
        result = handler(split)
    except ValidationError as exc:
        errors = relocated(exc, origin) + errors
    if errors:
        raise ValidationError.from_exception_data("layers", errors)
    return result


def rebind() -> Any:
    """The layer item annotation, made what every nested layer list takes (at import, and
    after each registration). Their built schemas are dropped first: each one's holds the
    others' (rebuilt one by one, one would keep another's stale union)."""
    item = layer_annotation()
    nested.bind(item, sugar)
    holders = [m for e in layers if e.info.nested for m in (e.args, e.params)]
    for model in holders:
        model.__pydantic_complete__ = False
        if "__pydantic_core_schema__" in model.__dict__:
            delattr(model, "__pydantic_core_schema__")
    for model in holders:
        model.model_rebuild(force=True)
    return item


if TYPE_CHECKING:  # what type checkers see of the generated unions

    class LayerSpec(Params):
        type: str

else:
    LayerSpec = rebind()


class ModelSpec(Params):
    """The layer stack, in order; input sizes are inferred from the data."""

    blocks: dict[BlockName, nested.LayerList] = Field(
        default_factory=dict,
        description="named lists of layers, used in layers (and other blocks) by name",
        json_schema_extra={"additionalProperties": False},  # a name off the pattern too
        # left out of config.yaml when there are none: runs from before blocks resume
        exclude_if=lambda blocks: not blocks,
    )
    layers: list[LayerSpec] = Field(min_length=1)

    @field_validator("layers", mode="wrap")
    @classmethod
    def _activation_sugar(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        return sugar(value, handler)

    @model_validator(mode="wrap")
    @classmethod
    def _named_blocks(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        """Block names are known while the layers are read; a name that is a layer's is
        refused, and after validation each reference gets its block's layers."""
        given = value.get("blocks") if isinstance(value, dict) else None
        given = given if isinstance(given, dict) else {}
        names = [n for n in given if isinstance(n, str)]
        errors: list[InitErrorDetails] = []
        for name in names:
            entry = layers.find(name)
            if entry is not None:
                error = PydanticCustomError(
                    "block_shadows",
                    "block '{name}' has the name of the {layer} layer; rename the block",
                    {"name": name, "layer": entry.name},
                )
                errors.append({"type": error, "loc": ("blocks", name), "input": given[name]})
        with nested.defined([n for n in names if layers.find(n) is None]):
            try:
                model = handler(value)
            except ValidationError as exc:
                errors = relocated(exc, []) + errors
        if errors:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        _resolve(model)
        return model


Key = tuple[str | int, ...]


def walk(specs: Sequence[Any], key: Key) -> Iterator[tuple[Key, Any]]:
    """Every layer of `specs` and of the lists inside them (block references not opened),
    with its key."""
    for i, spec in enumerate(specs):
        yield (*key, i), spec
        for part, inner in nested.inner(spec):
            yield from walk(inner, (*key, i, *part))


def _resolve(model: ModelSpec) -> None:
    """Each block reference gets its block's layers; a block that uses itself (through
    others or not) is refused at its name."""
    uses: dict[str, list[str]] = {}
    errors: list[InitErrorDetails] = []
    lists: list[tuple[Key, Sequence[Any]]] = [
        (("blocks", name), specs) for name, specs in model.blocks.items()
    ]
    for place, specs in [*lists, (("layers",), model.layers)]:
        for key, spec in walk(specs, place):
            if not isinstance(spec, nested.Block):
                continue
            if spec.name not in model.blocks:
                err = UnknownName("block", spec.name, sorted(model.blocks))
                if not model.blocks:
                    err.hint = "model.blocks defines none"
                error = PydanticCustomError(
                    "unknown_name", "{reason} ({hint})", {"reason": err.reason, "hint": err.hint}
                )
                errors.append({"type": error, "loc": (*key, "block", "name"), "input": spec.name})
                continue
            spec._layers = list(model.blocks[spec.name])
            if place[0] == "blocks":
                uses.setdefault(str(place[1]), []).append(spec.name)
    for name in model.blocks:
        cycle = _cycle(name, uses, [name])
        if cycle:
            error = PydanticCustomError(
                "block_cycle",
                "block '{name}' uses itself ({path}); a block cannot hold itself",
                {"name": name, "path": " -> ".join(cycle)},
            )
            errors.append({"type": error, "loc": ("blocks", name), "input": model.blocks[name]})
    if errors:
        raise ValidationError.from_exception_data("ModelSpec", errors)


def _cycle(name: str, uses: dict[str, list[str]], path: list[str]) -> list[str]:
    for used in uses.get(path[-1], []):
        if used == name:
            return [*path, used]
        if used not in path:
            found = _cycle(name, uses, [*path, used])
            if found:
                return found
    return []


# --- where a layer is in the file ---------------------------------------------------------

_read_from: dict[int, tuple[weakref.ref[ModelSpec], yamlio.Document]] = {}


def remember(model: ModelSpec, doc: yamlio.Document) -> None:
    """Keep which file `model` was read from, for messages about its layers."""
    _read_from[id(model)] = (weakref.ref(model, lambda _: _read_from.pop(id(model), None)), doc)


def where(model: ModelSpec, key: Key) -> str | None:
    """FILE:LINE:COL of the layer at `key` (a key of the validated spec), or None."""
    found = _read_from.get(id(model))
    if found is None or found[0]() is not model:
        return None
    doc = found[1]
    return doc.where(file_key(doc.data, key))


def file_key(data: Any, key: Key) -> yamlio.Key:
    """The key in the file of a spec key: tags the file leaves implicit skipped, and each
    index of a layer list counted as written (`{dense: 4, activation: relu}` is 2 layers)."""
    path: list[str | int] = []
    node = data
    for part in key:
        if isinstance(node, list) and isinstance(part, int) and _layer_list(node):
            _, origin, _ = split_activations(node)
            if not 0 <= part < len(origin):
                break
            index, sub = origin[part]
            path.append(index)
            node = node[index]
            if sub is not None:
                path.append(sub)
                node = node[sub]
            continue
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if in_dict or in_list:
            node = node[part]
            path.append(part)
    return tuple(path)


def _layer_list(node: list[Any]) -> bool:
    return all(isinstance(item, str | dict) for item in node)
