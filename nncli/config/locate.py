"""Where an error is in the file: pydantic's error locations, and the keys that errors of
the data, the model and the loss name, mapped to the file's line and column (or the `--set`
that gave the value), with a message and a fix."""

from __future__ import annotations

import re
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from nncli.config import yamlio
from nncli.config.activations import file_key
from nncli.config.overrides import TAGS
from nncli.errors import NncliError, Problem
from nncli.registry import closest

if TYPE_CHECKING:
    from nncli.config.spec import Experiment


def _unwrap(annotation: Any) -> Any:
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The models an annotation may hold (unions, Optional and Annotated opened)."""
    annotation = _unwrap(annotation)
    if get_origin(annotation) in (Union, types.UnionType):
        return [m for a in get_args(annotation) for m in _models(a)]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return []


def _tag(model: type[BaseModel]) -> Any:
    return next(
        (model.model_fields[k].default for k in TAGS.values() if k in model.model_fields), None
    )


def _valid_keys(root: type[BaseModel], loc: tuple[str | int, ...]) -> list[str]:
    """The field names allowed at `loc` (a pydantic error location), for suggestions."""
    annotation: Any = root
    for part in loc:
        models = _models(annotation)
        tagged = [m for m in models if _tag(m) == part]
        if tagged:  # a discriminated union's tag in the location: that member
            annotation = tagged[0]
            continue
        if len(models) == 1:
            field = models[0].model_fields.get(str(part))
            if field is None:
                return []
            annotation = field.annotation
        elif get_origin(_unwrap(annotation)) is list and isinstance(part, int):
            annotation = get_args(_unwrap(annotation))[0]
        else:
            return []
    models = _models(annotation)
    return list(models[0].model_fields) if len(models) == 1 else []


_NO_INPUT = (
    "monitor_metric",
    "missing",
    "extra_forbidden",
    "unknown_name",
    "bad_shorthand",
    "no_positional",
    "metric_task",
)


# errors of the whole file's validator, and the key each is about
_AT: dict[str, yamlio.Key] = {
    "monitor_metric": ("train", "monitor"),
    "metric_task": ("metrics",),
}


def _setting(path: yamlio.Key, overridden: dict[yamlio.Key, str], whole: bool) -> str | None:
    """The `--set` that gave the value at `path`, or where a check of a `whole` section
    failed, a value inside it (`data.split.val=0.9` for `data.split`'s val + test)."""
    for key, text in overridden.items():
        if path[: len(key)] == key or (whole and path and key[: len(path)] == path):
            return text
    return None


def problems(
    exc: ValidationError,
    doc: yamlio.Document,
    overridden: dict[yamlio.Key, str],
    root: type[BaseModel],
    pattern_help: Mapping[str, str],
) -> list[Problem]:
    """One Problem per error of validating `doc` against `root`; a string that does not
    match its pattern is explained by `pattern_help[pattern]`."""
    found = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"]) or _AT.get(err["type"], ())
        if err["type"] == "duplicate_metric":  # at the item given again
            loc = (*loc, err["ctx"]["i"])
        path = _data_path(doc.data, loc)
        if err["type"] == "unknown_name":  # point at the `name:` inside a map, if any
            path = next(
                (k for k in ((*path, t) for t in TAGS.values()) if k in doc.positions), path
            )
        whole = err["type"] in ("value_error", *_AT)
        setting = _setting(path, overridden, whole)
        where = f"--set {setting}" if setting else doc.where(path)
        message, hint = err["msg"], None
        if err["type"] == "extra_forbidden":
            name = str(loc[-1])
            valid = [k for k in _valid_keys(root, loc[:-1]) if k not in ("type", "name", "source")]
            message = f"unknown key '{name}'"
            near = closest(name, valid)
            hint = (
                f"did you mean '{near}'?"
                if near
                else (f"valid: {', '.join(valid)}" if valid else None)
            )
        elif err["type"] == "missing":
            message = "required key is missing"
        elif err["type"] == "unknown_name":
            message, _, rest = message.partition(" (")
            hint = rest.rstrip(")") or None
        elif err["type"] == "union_tag_not_found":
            message = "say which entry this is"
        elif err["type"] == "string_pattern_mismatch":
            message = pattern_help.get(err.get("ctx", {}).get("pattern", ""), message)
        if err["type"] not in _NO_INPUT and isinstance(err["input"], str | int | float):
            message = f"{message}, got {_shown(err['input'])}"
            hint = hint or _yaml_hint(err["type"], err["input"])
        if message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        found.append(Problem(where, _file_key(doc.data, loc), message, hint))
    return found


def _shown(value: str | int | float) -> str:
    """repr of a bad value, cut short: a 5000-digit number makes no readable message."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:50]}... ({len(text)} characters)"


_YAML11_BOOL = re.compile(r"^(?:y|Y|yes|Yes|YES|n|N|no|No|NO|on|On|ON|off|Off|OFF)$")


_YAML11_OCTAL = re.compile(r"^[-+]?0[0-9_]+$")


_YAML11_BASE60 = re.compile(r"^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$")


def _yaml_hint(kind: str, value: object) -> str | None:
    """The fix for values YAML 1.1 reads differently from nncli (which reads YAML 1.2):
    `no` is text, not false; `010` is text, not octal 8; `1:30` is text, not 90."""
    if kind == "bool_type" and isinstance(value, str) and _YAML11_BOOL.match(value):
        return f"write {'true' if value.lower() in ('y', 'yes', 'on') else 'false'}"
    if kind in ("int_type", "float_type") and isinstance(value, str):
        if _YAML11_OCTAL.match(value):
            digits = value.replace("_", "")
            return f"write {int(digits)} without the leading zero (YAML 1.1 reads {value} as octal)"
        if _YAML11_BASE60.match(value):
            return "write the number itself (YAML 1.1 reads a:b as a*60+b)"
    if kind == "string_type" and isinstance(value, int | float) and not isinstance(value, bool):
        return f"quote it to make it text: '{value}'"
    return None


def _file_key(data: Any, loc: tuple[str | int, ...]) -> str:
    """An error's location as the file spells it: `data.splt`, not pydantic's
    `data.digits.splt` (the tag of the union's member, which the file gives as the value
    of `source:`, `name:` or `type:`, or as a bare name, is not a key of the file)."""
    parts: list[str | int] = []
    node = data
    for part in loc:
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if isinstance(node, dict):
            tags = [node.get(t) for t in TAGS.values()]
        else:
            tags = [node] if isinstance(node, str) else []
        if isinstance(part, str) and part in tags and not in_dict:
            continue
        parts.append(part)
        node = node[part] if in_dict or in_list else None
    return ".".join(str(p) for p in parts)


def _data_path(data: Any, loc: tuple[str | int, ...]) -> yamlio.Key:
    """The part of an error location that exists in the file (union tags are skipped)."""
    path: list[str | int] = []
    node = data
    for part in loc:
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if in_dict or in_list:
            node = node[part]
        else:
            continue
        path.append(part)
    return tuple(path)


def where(doc: yamlio.Document, key: yamlio.Key, overrides: Sequence[str]) -> str:
    """FILE:LINE:COL of `key`, or the `--set` that replaced it (or renamed the entry)."""
    for setting in overrides:
        name = setting.partition("=")[0].strip()
        parts = tuple(int(p) if p.isdigit() else p for p in name.split("."))
        if len(parts) > 1 and parts[-1] in ("type", "name"):  # `--set loss.name=bce`
            parts = parts[:-1]
        if key[: len(parts)] == parts:
            return f"--set {setting}"
    return doc.where(key)


_LEADING_KEY = re.compile(r"([A-Za-z_]\w*(?:\.\w+)*)(?=[:\s(]|$)")


def error_key(exc: NncliError, exp: Experiment) -> str | None:
    """The key of the experiment file an error is about: the one it was raised with, the
    one its message starts with (`data.target: column ...`, `model.layers.3 (dense...`), or
    the data file it starts with or names (`FILE: 'x' has no rows` is about `data.path`)."""
    if exc.key:
        return exc.key
    text = str(exc)
    found = _LEADING_KEY.match(text)
    if found and found.group(1).split(".")[0] in type(exp.spec).model_fields:
        return found.group(1)
    named = [
        (text.find(value), -len(value), f"data.{name}")
        for name in getattr(exp.spec.data, "path_fields", ())
        if isinstance(value := getattr(exp.spec.data, name), str) and value in text
    ]
    return min(named)[2] if named else None


def located(exc: NncliError, exp: Experiment) -> Problem | None:
    """`exc` at the FILE:LINE:COL of the key of `exp` it is about (None where it names no
    key): what `nncli train` and `nncli validate` print for it."""
    key = error_key(exc, exp)
    if key is None:
        return None
    path = file_key(exp.doc.data, tuple(int(p) if p.isdigit() else p for p in key.split(".")))
    # a loss written as a map is pointed at by its `name:`
    place = where(exp.doc, (*path, "name") if path == ("loss",) else path, exp.overrides)
    message = _without_key(str(exc), key)
    field = key.removeprefix("data.")
    value = getattr(exp.spec.data, field, None)
    paths = getattr(exp.spec.data, "path_fields", ())
    # a data file that is not there: the name nearest to it
    absent = field in paths and isinstance(value, str) and not Path(value).exists()
    hint = missing_file_hint(Path(str(value)), exp.path) if absent else None
    return Problem(place, ".".join(map(str, path)), message, hint)


def _without_key(message: str, key: str) -> str:
    """The message without the key the location names: `data.target: column ...` is
    `column ...`, `model.layers.3 (conv1d(...)) cannot ...` is `conv1d(...) cannot ...`."""
    if message.startswith(f"{key}: "):
        return message[len(key) + 2 :]
    if message.startswith(f"{key} ("):
        depth = 0
        for i, c in enumerate(message[len(key) + 1 :], len(key) + 1):
            depth += {"(": 1, ")": -1}.get(c, 0)
            if depth == 0:
                return message[len(key) + 2 : i] + message[i + 1 :]
    return message


def missing_file_hint(path: Path, experiment: Path) -> str:
    """The fix for a data path that does not exist: the name nearest to its first missing
    part in the folder that exists, or where relative paths are read from."""
    folder = path.parent
    missing = path.name
    while not folder.is_dir() and folder != folder.parent:
        folder, missing = folder.parent, folder.name
    try:
        names = sorted(p.name for p in folder.iterdir())
    except OSError:
        names = []
    near = closest(missing, names)
    if near is not None:
        return f"did you mean {folder / near}?"
    return (
        f"relative paths are read from the experiment file's folder, {experiment.absolute().parent}"
    )
