"""Keras's habit `{dense: 25, activation: relu}`: one item of model.layers that is two
layers. Split before validation, with the place in the file of each resulting layer."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from nncli.config import yamlio
from nncli.layers import layers

ACTIVATION = "activation"  # Keras's habit: `{dense: 25, activation: relu}` is two layers


def _entry_named(value: Any) -> Any:
    """The layer entry a layer item names (`relu`, `{dense: 4}`, `{type: dense}`), or None."""
    if isinstance(value, dict):
        value = value.get(layers.key, next(iter(value), None))
    return layers.find(value) if isinstance(value, str) else None


def split_activations(
    items: list[Any],
) -> tuple[list[Any], list[tuple[int, str | None]], list[InitErrorDetails]]:
    """The layer list with each `{LAYER..., activation: A}` item split into LAYER and A;
    where each resulting item came from (index in the file, None or 'activation'); and the
    errors of an `activation` that is misplaced or names no activation."""
    split: list[Any] = []
    origin: list[tuple[int, str | None]] = []
    errors: list[InitErrorDetails] = []
    for i, item in enumerate(items):
        layer = {k: v for k, v in item.items() if k != ACTIVATION} if isinstance(item, dict) else {}
        entry = _entry_named(layer)
        own = entry is not None and ACTIVATION in entry.params.model_fields
        if not layer or len(layer) == len(item) or own:  # no sugar here
            split.append(item)
            origin.append((i, None))
            continue
        split.append(layer)
        origin.append((i, None))
        value = item[ACTIVATION]
        if value is None:  # Keras's activation=None: no activation
            continue
        activation = _entry_named(value)
        message = None
        if activation is not None and not activation.info.activation:
            message = (
                f"'{value}' names the {activation.name} layer, not an activation; "
                "leave `activation` out for none"
            )
        elif entry is not None and not entry.info.affine:
            message = (
                "`activation` goes with a layer that has weights (dense, conv1d, conv2d), "
                f"not {entry.name}; write the activation as the next layer"
            )
        if message is not None:
            error = PydanticCustomError("activation_sugar", message)
            errors.append({"type": error, "loc": (i, ACTIVATION), "input": item})
            continue
        split.append(value)
        origin.append((i, ACTIVATION))
    return split, origin, errors


def file_key(data: Any, key: yamlio.Key) -> yamlio.Key:
    """Where in the file a key of the validated spec was written: `model.layers.3` is
    `model.layers.1.activation` when item 1 is `{dense: 25, activation: relu}`."""
    items = data.get("model", {}).get("layers") if isinstance(data, dict) else None
    if key[:2] != ("model", "layers") or len(key) < 3 or not isinstance(items, list):
        return key
    _, origin, _ = split_activations(items)
    index = key[2]
    if not isinstance(index, int) or not 0 <= index < len(origin):
        return key
    i, part = origin[index]
    return ("model", "layers", i, *([part] if part else []), *key[3:])


def relocated(exc: ValidationError, origin: list[tuple[int, str | None]]) -> list[InitErrorDetails]:
    """The errors of the split list at the places of the file's list."""
    moved: list[InitErrorDetails] = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        if loc and isinstance(loc[0], int) and loc[0] < len(origin):
            i, part = origin[loc[0]]
            loc = (i, *([part] if part else []), *loc[1:])
        ctx = {k: v for k, v in err.get("ctx", {}).items() if isinstance(v, str | int | float)}
        error = PydanticCustomError(err["type"], err["msg"], ctx)
        moved.append({"type": error, "loc": loc, "input": err["input"]})
    return moved
