"""How a registry entry is written in an experiment file: a bare name, a one-key map or
a full map, all normalised to the entry's tagged parameters (with did-you-mean errors),
and each form spelled out for the JSON Schema."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, WithJsonSchema, create_model
from pydantic_core import PydanticCustomError

from nncli.registry import Registry, UnknownName


@dataclass(frozen=True)
class References:
    """Names a file defines for itself (model.blocks), used where a registered name goes:
    `entry(name, value)` is the entry a reference stands for (None: not one of them),
    `names()` the names defined, `schema` the JSON Schema of the map form `{name: ...}`."""

    entry: Callable[[str, Any], dict[str, Any] | None]
    names: Callable[[], list[str]]
    schema: dict[str, Any]


def _shorthand(registry: Registry[Any], refs: References | None = None) -> Callable[[Any], Any]:
    """Normalise `name`, `{name: value}` and `{key: name, ...}` into `{key: canonical, ...}`."""
    key = registry.key

    def unknown(name: object) -> PydanticCustomError:
        defined = refs.names() if refs is not None else []
        err = UnknownName(registry.kind, str(name), sorted({*registry.names(), *defined}))
        return PydanticCustomError(
            "unknown_name", "{reason} ({hint})", {"reason": err.reason, "hint": err.hint}
        )

    def normalise(value: Any) -> Any:
        if isinstance(value, str):
            found = None if refs is None or registry.find(value) else refs.entry(value, None)
            value = found or {key: value}
        if not isinstance(value, dict):
            return value  # the union reports the wrong type
        if key in value:
            try:
                return {**value, key: registry.canonical(value[key])}
            except UnknownName:
                raise unknown(value[key]) from None
        if len(value) != 1:
            raise PydanticCustomError(
                "bad_shorthand",
                "a {kind} is a name (`relu`), a one-key map (`dense: 16`) or a map with `{key}`",
                {"kind": registry.kind, "key": key},
            )
        [(name, arg)] = value.items()
        if refs is not None and isinstance(name, str) and registry.find(name) is None:
            found = refs.entry(name, arg)
            if found is not None:
                return found
        try:
            entry = registry.get(name)
        except UnknownName:
            raise unknown(name) from None
        if isinstance(arg, dict):
            return {key: entry.name, **arg}
        if arg is None:
            return {key: entry.name}
        if entry.positional is None:
            raise PydanticCustomError(
                "no_positional",
                "{kind} '{name}' takes no value; write it as a bare name",
                {"kind": registry.kind, "name": entry.name},
            )
        return {key: entry.name, entry.positional: arg}

    return normalise


def entry_name(registry: Registry[Any], value: Any) -> str | None:
    """The registered name an entry as written (`name`, `{name: value}` or `{key: name,
    ...}`) names, or None where it names none (validation says why)."""
    try:
        written = _shorthand(registry)(value)
    except PydanticCustomError:
        return None
    name = written.get(registry.key) if isinstance(written, dict) else None
    return name if isinstance(name, str) else None


def entry_annotation(registry: Registry[Any], refs: References | None = None) -> Any:
    """The annotation of one registry item in the file: shorthand in, tagged union out.

    The schema lists each form a file may use: a bare name, a one-key map per name (its
    value the positional parameter, a map of parameters, or nothing), or the full map; with
    `refs`, also a one-key map naming something the file defines."""
    names = Literal[tuple(registry.names())] if len(registry) else str
    defined = [] if refs is None else [Annotated[dict[str, Any], WithJsonSchema(refs.schema)]]
    forms = (names, *_written_forms(registry), *defined, registry.union())
    shorthand = Union[forms]  # type: ignore[valid-type]  # noqa: UP007
    normalise = _shorthand(registry, refs)
    return Annotated[registry.union(), BeforeValidator(normalise, json_schema_input_type=shorthand)]


def _written_forms(registry: Registry[Any]) -> list[type[BaseModel]]:
    """`{dense: 16}`, `{dense: {units: 16}}`, `{relu: null}`: one model per name and alias,
    for the schema only (validation goes through `_shorthand`). A layer with weights also
    takes Keras's `activation:` beside it, in this form and written in full."""
    forms: list[type[BaseModel]] = []
    for entry in registry:
        values: list[Any] = [entry.args, type(None)]
        if entry.positional is not None:  # its type with its bounds (`dense: -8` is refused)
            field = entry.params.model_fields[entry.positional]
            values.insert(
                0,
                Annotated[(field.annotation, *field.metadata)]
                if field.metadata
                else field.annotation,
            )
        value: Any = Union[tuple(values)]  # noqa: UP007
        sugar = _activation_key() if getattr(entry.info, "affine", False) else {}
        if sugar:
            title = "".join(part.title() for part in entry.name.split("_")) + "WithActivation"
            forms.append(create_model(title, __base__=entry.params, **sugar))
        for name in (entry.name, *entry.aliases):
            title = "".join(part.title() for part in name.split("_")) + "Shorthand"
            fields: dict[str, Any] = {name: (value, ...), **sugar}
            # built when first used (after the spec's refresh): a nested layer list takes
            # the layer union of that moment, this entry's form included
            config = ConfigDict(extra="forbid", defer_build=True)
            forms.append(create_model(title, __config__=config, **fields))
    return forms


def _activation_key() -> dict[str, Any]:
    """`activation: relu` (or null) beside a layer with weights, as config/activations.py
    splits it into two layers."""
    from nncli.config.activations import ACTIVATION
    from nncli.layers import layers

    names = [n for e in layers.in_order() if e.info.activation for n in (e.name, *e.aliases)]
    return {ACTIVATION: (Optional[Literal[tuple(names)]], None)}  # noqa: UP045


def name_annotation(registry: Registry[Any]) -> Any:
    """The annotation of a bare registered name (a metric): checked, made canonical."""

    def check(value: Any) -> Any:
        if not isinstance(value, str):
            return value  # the str type reports it
        try:
            return registry.canonical(value)
        except UnknownName as exc:
            raise PydanticCustomError(
                "unknown_name", "{reason} ({hint})", {"reason": exc.reason, "hint": exc.hint}
            ) from None

    names = Literal[tuple(registry.names())] if len(registry) else str
    return Annotated[str, BeforeValidator(check, json_schema_input_type=names)]
