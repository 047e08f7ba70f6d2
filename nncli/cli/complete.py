"""Shell completion (Typer's `--install-completion`): run folders for the commands that take
one, and the dotted keys `--set` takes. Torch-free, like the rest of the CLI's parsing."""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union, get_args, get_origin

if TYPE_CHECKING:  # pydantic loads only when completion asks for keys, not for --help
    from pydantic import BaseModel

RUNS_DIR = Path("runs")


def run_folders(incomplete: str) -> list[str]:
    """Run folders (a folder holding run.json) below the folder being typed, or runs/."""
    typed = Path(incomplete) if incomplete else RUNS_DIR
    parent = typed if incomplete.endswith("/") or not incomplete else typed.parent
    if not parent.is_dir():
        return []
    found = [
        str(child) + ("" if (child / "run.json").is_file() else "/")
        for child in sorted(parent.iterdir())
        if child.is_dir() and not child.name.startswith(".")
    ]
    return [path for path in found if path.startswith(incomplete)]


def set_keys(incomplete: str) -> list[str]:
    """`section.key=` for every setting of the experiment file, as `--set` takes them."""
    from nncli.config.spec import Spec

    return [f"{key}=" for key in sorted(_keys(Spec)) if key.startswith(incomplete)]


def _keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for name, field in model.model_fields.items():
        if name in ("type", "name", "source") and prefix:
            continue  # an entry's tag: set the entry by its section instead
        models = _models(field.annotation)
        if models and name != "layers":
            for inner in models:
                keys |= _keys(inner, f"{prefix}{name}.")
            if len(models) > 1:  # a registry entry: `--set loss=huber` picks another one
                keys.add(f"{prefix}{name}")
        else:
            keys.add(f"{prefix}{name}")
    return keys


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The models a field holds: itself, or each member of a union (Optional, Annotated)."""
    while get_origin(annotation) is typing.Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) in (Union, types.UnionType):
        return [m for a in get_args(annotation) for m in _models(a)]
    from pydantic import BaseModel

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return []
