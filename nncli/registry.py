"""Registries: lowercase name -> (parameters model, builder), with close-match errors.

Torch-free at import time: builders import torch inside their bodies, so the spec (which
needs only the parameter models) loads fast.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any, Generic, Literal, TypeVar, Union, cast

from pydantic import BaseModel, ConfigDict, Field, create_model

from nncli.errors import NncliError

B = TypeVar("B", bound=Callable[..., Any])


class Params(BaseModel):
    """Base of every section and entry model: unknown keys and lax coercions are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class NoParams(Params):
    """An entry that takes no parameters."""


# What Keras and PyTorch call nncli's names, and what the nncli entry expects: a name
# these users bring gets the nncli one (lowercase keys; a key name has no note)
HABITS: dict[str, tuple[str, str | None]] = {
    "sparse_categorical_crossentropy": (
        "cross_entropy",
        "it takes the last layer's raw outputs (logits: end with dense, no softmax) and "
        "integer class labels",
    ),
    "categorical_crossentropy": (
        "cross_entropy",
        "it takes logits (end with dense, no softmax) and integer class labels, not one-hot rows",
    ),
    "crossentropyloss": (
        "cross_entropy",
        "like torch's CrossEntropyLoss it takes logits (no softmax) and integer class labels",
    ),
    "binary_crossentropy": (
        "bce",
        "it takes probabilities (end with sigmoid) and 0/1 targets; for logits use bce_with_logits",
    ),
    "bcewithlogitsloss": (
        "bce_with_logits",
        "it takes logits (no sigmoid at the end) and 0/1 targets",
    ),
    "mean_squared_error": ("mse", "it takes the raw outputs and real-valued targets"),
    "mean_absolute_error": ("mae", "it takes the raw outputs and real-valued targets"),
    "learning_rate": ("lr", None),
}


def closest(name: str, candidates: list[str]) -> str | None:
    """The candidate nearest to `name`, if any is close enough to be a likely typo, or
    the nncli name of a name Keras or PyTorch users bring (`learning_rate` -> `lr`)."""
    habit = HABITS.get(name.lower())
    if habit is not None and habit[0] in candidates:
        return habit[0]
    matches = difflib.get_close_matches(name.lower(), candidates, n=1, cutoff=0.6)
    return matches[0] if matches else None


class UnknownName(NncliError):
    """A name that no entry of a registry answers to."""

    def __init__(self, kind: str, name: str, valid: list[str]) -> None:
        self.kind, self.name, self.valid = kind, name, valid
        self.suggestion = closest(name, valid)
        hint = f"did you mean '{self.suggestion}'?" if self.suggestion else None
        note = HABITS.get(name.lower(), (None, None))
        if hint and note[0] == self.suggestion and note[1]:
            hint = f"{hint} {note[1]}"
        self.reason = f"unknown {kind} '{name}'"
        self.hint = hint or f"valid: {', '.join(valid)}"
        super().__init__(f"{self.reason} ({self.hint})")


def docstring_summary(doc: str | None) -> str:
    """A docstring's first paragraph on one line (a first line alone can stop mid-sentence)."""
    paragraph = (doc or "").strip().split("\n\n", 1)[0]
    return " ".join(paragraph.split())


@dataclass(frozen=True)
class Entry(Generic[B]):
    """One registered name: its parameters model (tagged with the name) and its builder."""

    name: str
    params: type[Params]
    build: B
    aliases: tuple[str, ...] = ()
    positional: str | None = None  # the parameter that `{name: value}` shorthand sets
    summary: str = ""
    info: Any = None  # what the kind's users need to know of an entry (e.g. a loss's task)
    args: type[Params] = Params  # the parameters without the tag (for the schema's shorthand)
    imports: tuple[str, ...] = ()  # modules its builder imports that take time (a warm
    # sweep's fork server imports them once, for every trial)

    def fields(self) -> Iterator[tuple[str, str, str]]:
        """(parameter, type, default) for each parameter, for `nncli list`."""
        for pname, info in self.params.model_fields.items():
            if (
                info.annotation is not None
                and getattr(info.annotation, "__origin__", None) is Literal
            ):
                continue
            if pname in ("type", "name", "source"):
                continue
            default = "required" if info.is_required() else repr(info.default)
            annotation = getattr(info.annotation, "__name__", None) or str(info.annotation)
            yield pname, annotation.replace("typing.", ""), default


@dataclass
class Registry(Generic[B]):
    """Entries of one kind (layer, loss, optimizer, metric, dataset, logger), looked up by
    lowercase name; `info` carries each entry's traits (what its users need to know)."""

    kind: str
    key: str = "type"  # the field that names the entry in the experiment file
    base: type[Params] = Params
    _entries: dict[str, Entry[B]] = field(default_factory=dict)
    _aliases: dict[str, str] = field(default_factory=dict)
    _listeners: list[Callable[[], None]] = field(default_factory=list)

    def register(
        self,
        name: str,
        *aliases: str,
        params: type[Params] | None = None,
        positional: str | None = None,
        info: Any = None,
        imports: tuple[str, ...] = (),
    ) -> Callable[[B], B]:
        """Decorator: register `build` under `name` (and aliases); a repeated name is an error."""

        def decorate(build: B) -> B:
            for n in (name, *aliases):
                if n != n.lower() or n in self._aliases:
                    raise ValueError(f"{self.kind} '{n}' is registered twice or is not lowercase")
            base = params or self.base
            if positional is not None and positional not in base.model_fields:
                raise ValueError(f"{self.kind} '{name}': positional '{positional}' is no field")
            tag: Any = Literal[name]
            title = "".join(part.title() for part in name.split("_")) + self.kind.title()
            model = cast(
                "type[Params]",
                create_model(title, __base__=base, __doc__=base.__doc__, **{self.key: (tag, name)}),  # type: ignore[call-overload]
            )
            summary = docstring_summary(build.__doc__)
            self._entries[name] = Entry(
                name, model, build, aliases, positional, summary, info, base, imports
            )
            for n in (name, *aliases):
                self._aliases[n] = name
            for listener in self._listeners:
                listener()
            return build

        return decorate

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call `listener` after each later registration (the spec rebuilds its unions, so
        an entry registered at any time is valid in experiment files)."""
        self._listeners.append(listener)

    def canonical(self, name: str) -> str:
        """The registered name for `name` or one of its aliases; UnknownName otherwise."""
        found = self._aliases.get(name.lower()) if isinstance(name, str) else None
        if found is None:
            raise UnknownName(self.kind, str(name), sorted(self._aliases))
        return found

    def get(self, name: str) -> Entry[B]:
        return self._entries[self.canonical(name)]

    def find(self, name: str) -> Entry[B] | None:
        """The entry for `name` or an alias, or None (no error)."""
        found = self._aliases.get(name.lower())
        return None if found is None else self._entries[found]

    def names(self) -> list[str]:
        """Every name and alias, sorted (what the file may say)."""
        return sorted(self._aliases)

    def in_order(self) -> list[Entry[B]]:
        """The entries in the order they were registered."""
        return list(self._entries.values())

    def __iter__(self) -> Iterator[Entry[B]]:
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def __len__(self) -> int:
        return len(self._entries)

    def union(self) -> Any:
        """One discriminated union of every entry's parameters model, on `self.key`."""
        models = tuple(e.params for e in self)
        if not models:  # nothing registered yet: every name is refused before this
            return self.base
        if len(models) == 1:
            return models[0]
        return Annotated[Union[models], Field(discriminator=self.key)]  # noqa: UP007
