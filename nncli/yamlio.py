"""Safe YAML loading that keeps the line and column of every key, for error messages.

The file is composed into nodes, walked once (bounded in node count and depth, so alias
bombs are refused), and turned into plain Python values while `dotted.path -> (line, col)`
is recorded. Duplicate keys and non-scalar keys are errors. Numbers such as `1e-3`, which
YAML 1.1 reads as strings, are read as floats.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nncli.errors import Problem, SpecError

MAX_BYTES = 1_000_000
MAX_NODES = 100_000
MAX_DEPTH = 64

Key = tuple[str | int, ...]

_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.VERBOSE,
)


_PLAIN_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")


class _Loader(yaml.SafeLoader):
    """SafeLoader (no Python tags) that also reads `1e-3` as a float."""


_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


@dataclass
class Document:
    """A YAML file's values and where each key stands in it."""

    source: str  # the file's path as the user wrote it, for messages
    text: str
    data: Any
    positions: dict[Key, tuple[int, int]] = field(default_factory=dict)

    def where(self, key: Key) -> str:
        """`FILE:LINE:COL` of the deepest part of `key` present in the file."""
        for n in range(len(key), -1, -1):
            if key[:n] in self.positions:
                line, col = self.positions[key[:n]]
                return f"{self.source}:{line}:{col}"
        return f"{self.source}:1:1"


def _problem(source: str, mark: Any, key: Key, message: str, hint: str | None = None) -> Problem:
    where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark is not None else source
    return Problem(where, ".".join(str(k) for k in key), message, hint)


class _Walker:
    def __init__(self, loader: _Loader, source: str) -> None:
        self.loader, self.source = loader, source
        self.positions: dict[Key, tuple[int, int]] = {}
        self.problems: list[Problem] = []
        self.nodes = 0

    def value(self, node: yaml.Node, key: Key, depth: int) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES or depth > MAX_DEPTH:
            what = f"more than {MAX_NODES} values" if self.nodes > MAX_NODES else "nesting too deep"
            raise SpecError(
                [
                    _problem(
                        self.source,
                        node.start_mark,
                        key[:1],
                        f"the file expands to {what}",
                        "experiment files are small; remove repeated aliases (*name)",
                    )
                ]
            )
        if isinstance(node, yaml.MappingNode | yaml.SequenceNode) and node.tag not in _PLAIN_TAGS:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"could not determine a constructor for the tag {node.tag!r}",
                node.start_mark,
            )
        if isinstance(node, yaml.MappingNode):
            self.loader.flatten_mapping(node)  # resolves `<<: *base` merges
            out: dict[str, Any] = {}
            for knode, vnode in node.value:
                if not isinstance(knode, yaml.ScalarNode):
                    self.problems.append(
                        _problem(self.source, knode.start_mark, key, "a key must be a plain name")
                    )
                    continue
                name = self.loader.construct_object(knode)
                if not isinstance(name, str | int) or isinstance(name, bool):
                    name = str(knode.value)
                name = str(name)
                if name in out:
                    first = self.positions[(*key, name)]
                    self.problems.append(
                        _problem(
                            self.source,
                            knode.start_mark,
                            (*key, name),
                            "duplicate key",
                            f"first given at line {first[0]}; keep one",
                        )
                    )
                    continue
                self.positions[(*key, name)] = (
                    knode.start_mark.line + 1,
                    knode.start_mark.column + 1,
                )
                out[name] = self.value(vnode, (*key, name), depth + 1)
            return out
        if isinstance(node, yaml.SequenceNode):
            items = []
            for i, item in enumerate(node.value):
                self.positions[(*key, i)] = (item.start_mark.line + 1, item.start_mark.column + 1)
                items.append(self.value(item, (*key, i), depth + 1))
            return items
        return self.loader.construct_object(node)


def loads(text: str, source: str = "<string>") -> Document:
    """Parse YAML text into a Document; every problem raises one SpecError naming its place."""
    if len(text) > MAX_BYTES:
        raise SpecError(
            [
                Problem(
                    source,
                    "",
                    f"file is larger than {MAX_BYTES} bytes",
                    "is it an experiment file?",
                )
            ]
        )
    if "\x00" in text:
        raise SpecError([Problem(source, "", "file contains NUL bytes", "is it a text file?")])
    loader = _Loader(text.lstrip("\ufeff"))
    try:
        node = loader.get_single_node()
        walker = _Walker(loader, source)
        data = {} if node is None else walker.value(node, (), 0)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        hint = "remove the tag: experiment files hold plain values" if "tag" in message else None
        raise SpecError([_problem(source, mark, (), f"not valid YAML: {message}", hint)]) from None
    except yaml.YAMLError as exc:
        raise SpecError([Problem(source, "", f"not valid YAML: {exc}")]) from None
    finally:
        loader.dispose()
    if walker.problems:
        raise SpecError(walker.problems)
    doc = Document(source, text, data, walker.positions)
    return doc


def load(path: Path, source: str | None = None) -> Document:
    """Read and parse a YAML file, with clear errors for a missing or unreadable file."""
    shown = source or str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SpecError([Problem(shown, "", "no such file", "check the path")]) from None
    except IsADirectoryError:
        raise SpecError(
            [Problem(shown, "", "is a folder, not a file", "name a .yaml file")]
        ) from None
    except OSError as exc:
        raise SpecError([Problem(shown, "", f"cannot be read: {exc.strerror}")]) from None
    if len(raw) > MAX_BYTES:
        raise SpecError(
            [
                Problem(
                    shown, "", f"file is larger than {MAX_BYTES} bytes", "is it an experiment file?"
                )
            ]
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SpecError(
            [Problem(f"{shown}:{line}", "", "file is not UTF-8 text", "save it as UTF-8")]
        ) from None
    return loads(text, shown)


def parse_value(text: str) -> Any:
    """A `--set key=value` value, read as YAML would read it (`0.01`, `true`, `[8, 4]`)."""
    try:
        value = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError:
        return text
    return text if value is None and text.strip() not in ("null", "~") else value


def dump(data: Any) -> str:
    """YAML text of plain values, keys in the given order."""
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None, allow_unicode=True)
