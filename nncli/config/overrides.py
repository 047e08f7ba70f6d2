"""`--set KEY=VALUE`: a dotted key applied to the file's values before validation, so a
setting is checked (and located) like the file itself."""

from __future__ import annotations

from typing import Any

from nncli.config import yamlio
from nncli.data import datasets
from nncli.errors import Problem, SpecError
from nncli.layers import layers
from nncli.losses import losses
from nncli.optim import optimizers
from nncli.registry import UnknownName

_DEFAULT_SECTIONS = {"optimizer": {"name": "adam"}}  # as Spec's default optimizer


TAGS = {"model": layers.key, "loss": losses.key, "optimizer": optimizers.key, "data": datasets.key}


def apply(data: dict[str, Any], setting: str) -> yamlio.Key:
    """Apply one `dotted.key=value` to the file's values; the key's path is returned."""
    key, sep, raw = setting.partition("=")
    half = yamlio.surrogate(setting)  # a command line's bytes that are not UTF-8
    if half is not None:
        raise SpecError([Problem(f"--set {setting}", key.strip(), *half)])
    if not sep or not key.strip():
        raise SpecError(
            [Problem(f"--set {setting}", "", "expected KEY=VALUE", "e.g. --set optimizer.lr=0.01")]
        )
    parts: list[str | int] = [int(p) if p.isdigit() else p for p in key.strip().split(".")]
    node: Any = data
    for i, part in enumerate(parts[:-1]):
        child = _child(node, part, setting, parts[: i + 1])
        if child is None:  # a section the file leaves out: its defaults, then the setting
            child = dict(_DEFAULT_SECTIONS.get(str(part), {})) if i == 0 else {}
            node[part] = child
        elif isinstance(child, str) and isinstance(parts[i + 1], str):
            # a bare name gains parameters: `gelu` -> {type: gelu}, `huber` -> {name: huber}
            child = {TAGS.get(str(parts[0]), "type"): child}
            node[part] = child
        node = child
    last = parts[-1]
    if isinstance(node, list):
        _child(node, last, setting, parts)
    elif isinstance(node, dict) and isinstance(last, str):
        tag = node.get("type")
        if tag is not None and last not in node and len(parts) >= 2 and _is_layer(tag, last):
            last = layers.get(last).positional or last  # {type: dense, units: 16} + .dense=32
    else:
        raise SpecError([Problem(f"--set {setting}", key, "cannot set a key inside a plain value")])
    try:
        node[last] = yamlio.parse_value(raw)
    except SpecError as exc:  # past the caps, a duplicate key: located at the setting
        raise SpecError(
            [Problem(f"--set {setting}", key, p.message, p.hint) for p in exc.problems]
        ) from None
    return tuple(parts)


def _is_layer(tag: Any, name: str) -> bool:
    try:
        return layers.canonical(str(tag)) == layers.canonical(name)
    except UnknownName:
        return False


def _child(node: Any, part: str | int, setting: str, path: list[str | int]) -> Any:
    dotted = ".".join(str(p) for p in path)
    if isinstance(node, list):
        if not isinstance(part, int) or not 0 <= part < len(node):
            raise SpecError(
                [
                    Problem(
                        f"--set {setting}",
                        dotted,
                        f"no item {part}: the list has {len(node)} item(s)",
                        "count from 0",
                    )
                ]
            )
        return node[part]
    if isinstance(node, dict):
        return node.get(str(part)) if isinstance(part, int) else node.get(part)
    raise SpecError([Problem(f"--set {setting}", dotted, "cannot set a key inside a plain value")])
