"""Safe YAML loading that keeps the line and column of every key, for error messages.

The file is composed into nodes, walked once (bounded in node count and depth, so alias
bombs are refused), and turned into plain Python values while `dotted.path -> (line, col)`
is recorded. Duplicate keys and non-scalar keys are errors. Numbers such as `1e-3`, which
YAML 1.1 reads as strings, are read as floats.

Plain scalars resolve as in YAML 1.2: `no`, `on`, `010`, `1:30` and `2001-12-14` stay the
text written (YAML 1.1 reads them as false, true, 8, 90 and a date), so a name or a choice
is what the user typed, and where a bool or a number is meant the strict types refuse the
text with a hint. Only `true`/`false`, decimal, `0x`/`0b` integers and decimal floats are
read as bools and numbers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nncli.errors import Problem, SpecError
from nncli.inputs import FileProblem, read_bytes

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


_SURROGATE = re.compile("[\ud800-\udfff]")


def surrogate(text: str) -> tuple[str, str] | None:
    """What is wrong with text holding a lone surrogate (`"\\ud800"`, or bytes of a command
    line that are not UTF-8), and the fix: it is no character; nothing can print it."""
    found = _SURROGATE.search(text)
    if found is None:
        return None
    code = f"U+{ord(found.group()):04X}"
    return f"the text holds {code}, half of a surrogate pair and not a character", (
        "write the character itself, or its \\UXXXXXXXX escape"
    )


_TOO_DEEP = (
    f"nested more than {MAX_DEPTH} levels deep",
    "experiment files are a few levels deep; is it an experiment file?",
)
_BRACKETS = re.compile(r"(?:[\[{]\s*)" + f"{{{MAX_DEPTH + 1}}}")  # 65 `[` or `{` in a row
_PLAIN_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")
_MERGE = "tag:yaml.org,2002:merge"


class _Refused(yaml.MarkedYAMLError):
    """A file past the caps (nesting, merged keys), found while composing its nodes."""


class _Loader(yaml.SafeLoader):
    """SafeLoader (no Python tags) with YAML 1.2's plain scalars, bounded nesting and merges.

    The composer recurses once per nesting level, so without a cap a file of 100000 `[`
    exhausts Python's stack before the walker could count anything.
    """

    # our own table: SafeLoader's holds the YAML 1.1 forms (yes/no, 010, 1:30, dates, `=`)
    yaml_implicit_resolvers: dict[Any, Any] = {}  # noqa: RUF012

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH + 1:  # the walker allows MAX_DEPTH below the root
                raise _Refused(
                    problem=_TOO_DEEP[0],
                    problem_mark=self.peek_event().start_mark,  # type: ignore[no-untyped-call]
                    note=_TOO_DEEP[1],
                )
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def flatten_mapping(self, node: Any) -> None:
        """`<<` merges resolved in place: the merged pairs, in the order written (the walker
        keeps the first of a key), then the node's own pairs (which override them).

        PyYAML's own version differs between releases in order and de-duplication, and in
        some copies every merged pair: ten levels of `<<: [*a, *a, ...]` make 10^10.
        """
        merged: list[tuple[Any, Any]] = []
        own: list[tuple[Any, Any]] = []
        for key, value in node.value:
            if key.tag != _MERGE:
                own.append((key, value))
                continue
            sources = value.value if isinstance(value, yaml.SequenceNode) else [value]
            for source in sources:
                if not isinstance(source, yaml.MappingNode):
                    raise yaml.constructor.ConstructorError(
                        "while merging keys (<<)",
                        node.start_mark,
                        f"expected a mapping or a list of mappings, but found {source.id}",
                        source.start_mark,
                    )
                self.flatten_mapping(source)
                if len(merged) + len(source.value) > MAX_NODES:
                    raise _Refused(
                        problem=f"merge keys (<<) expand to more than {MAX_NODES} values",
                        problem_mark=key.start_mark,
                        note="experiment files are small; remove repeated merges",
                    )
                merged.extend(source.value)
        node.value = merged + own


_RESOLVERS: list[tuple[str, str, list[str]]] = [
    ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", list("tTfF")),
    # no leading zeros (YAML 1.1 octal) and no `1:30` (YAML 1.1 base 60)
    (
        "int",
        r"^(?:[-+]?(?:0|[1-9][0-9_]*)|[-+]?0b[01][01_]*|[-+]?0x[0-9a-fA-F][0-9a-fA-F_]*)$",
        list("-+0123456789"),
    ),
    ("null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    ("merge", r"^(?:<<)$", ["<"]),
]
for _tag, _pattern, _first in _RESOLVERS:
    _Loader.add_implicit_resolver(f"tag:yaml.org,2002:{_tag}", re.compile(_pattern), _first)
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
        self.merged: dict[int, int] = {}  # id(mapping node) -> pairs its `<<` keys brought in

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
            if id(node) not in self.merged:  # flattening rewrites the node: count once
                own = sum(1 for k, _ in node.value if k.tag != _MERGE)
                self.loader.flatten_mapping(node)  # resolves `<<: *base` merges
                self.merged[id(node)] = len(node.value) - own
            merged = self.merged[id(node)]
            out: dict[str, Any] = {}
            explicit: set[str] = set()
            for i, (knode, vnode) in enumerate(node.value):
                if not isinstance(knode, yaml.ScalarNode):
                    self.problems.append(
                        _problem(self.source, knode.start_mark, key, "a key must be a plain name")
                    )
                    continue
                name = self.scalar(knode, key)
                if not isinstance(name, str | int) or isinstance(name, bool):
                    name = str(knode.value)
                name = str(name)
                # merged pairs come first and the first of a key counts (YAML's merge rule);
                # a key written out overrides them; only a key written twice is a mistake
                if i < merged and name in out:
                    continue
                if i >= merged and name in explicit:
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
                if i >= merged:
                    explicit.add(name)
                self.positions[(*key, name)] = (
                    knode.start_mark.line + 1,
                    knode.start_mark.column + 1,
                )
                out.pop(name, None)  # an overridden merged key moves to where it is written
                out[name] = self.value(vnode, (*key, name), depth + 1)
            return out
        if isinstance(node, yaml.SequenceNode):
            items = []
            for i, item in enumerate(node.value):
                self.positions[(*key, i)] = (item.start_mark.line + 1, item.start_mark.column + 1)
                items.append(self.value(item, (*key, i), depth + 1))
            return items
        return self.scalar(node, key)

    def scalar(self, node: yaml.Node, key: Key) -> Any:
        """A scalar's value; one that cannot be read (`!!int abc`, a 5000-digit number, an
        impossible date) is a problem at its place, not a crash."""
        if node.tag == _MERGE:  # `<<` as a value, not a key: the text, as YAML 1.2 reads it
            return str(node.value)
        try:
            value = self.loader.construct_object(node)
            half = surrogate(value) if isinstance(value, str) else None
            if half is None:
                return value
            self.problems.append(_problem(self.source, node.start_mark, key, *half))
            return None
        except yaml.YAMLError:
            raise  # a refused tag: reported with its place by loads
        except (ValueError, KeyError, AttributeError, TypeError, OverflowError) as exc:
            kind = str(node.tag).rsplit(":", 1)[-1]
            text = str(node.value)
            if "Exceeds the limit" in str(exc):  # Python's int-from-text cap
                reason = f"a number of {len(text)} digits is too long"
            else:
                reason = f"cannot read {_short(text)!r} as {kind}"
            plain = getattr(node, "style", None) is None
            implied = self.loader.resolve(yaml.ScalarNode, text, (plain, not plain))  # type: ignore[no-untyped-call]
            hint = f"fix the value or remove the !!{kind} tag" if node.tag != implied else None
            self.problems.append(_problem(self.source, node.start_mark, key, reason, hint))
            return None


def _short(text: str, limit: int = 40) -> str:
    """`text` cut to `limit` characters for a message (`1000…(5001 characters)`)."""
    return text if len(text) <= limit else f"{text[:limit]}…({len(text)} characters)"


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
    text = text.lstrip("\ufeff")
    try:
        found, walker = _walk(text, source)
    except yaml.YAMLError as exc:
        raise SpecError([_yaml_problem(exc, text, source)]) from None
    if walker.problems:
        raise SpecError(walker.problems)
    data = {} if found is None else found[0]
    doc = Document(source, text, data, walker.positions)
    return doc


def _walk(text: str, source: str) -> tuple[tuple[Any] | None, _Walker]:
    """((value,) or None for an empty document, the walker that recorded positions and
    problems); YAMLError for text that is not YAML or is past the caps."""
    brackets = _BRACKETS.search(text)
    if brackets:  # the scanner's look-ahead costs depth squared: refuse before it starts
        at = len(text[: brackets.end()].rstrip()) - 1  # the 65th bracket
        line = text.count("\n", 0, at)
        mark = yaml.Mark(source, at, line, at - text.rfind("\n", 0, at) - 1, None, 0)
        raise _Refused(problem=_TOO_DEEP[0], problem_mark=mark, note=_TOO_DEEP[1])
    loader = _Loader(text)  # the reader refuses control characters here already
    try:
        walker = _Walker(loader, source)
        node = loader.get_single_node()
        return (None if node is None else (walker.value(node, (), 0),)), walker
    finally:
        loader.dispose()


def _yaml_problem(exc: yaml.YAMLError, text: str, source: str) -> Problem:
    """One located problem for a YAML error, worded for someone who did not write PyYAML."""
    if isinstance(exc, _Refused):
        return _problem(source, exc.problem_mark, (), str(exc.problem), exc.note)
    if isinstance(exc, yaml.reader.ReaderError):
        before = text[: exc.position]
        where = f"{source}:{before.count(chr(10)) + 1}:{len(before) - before.rfind(chr(10))}"
        code = exc.character if isinstance(exc.character, int) else 0  # str input: an int
        escape = f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
        return Problem(
            where,
            "",
            f"character U+{code:04X} is not allowed in YAML",
            f"delete it, or write it as {escape} in a double-quoted string",
        )
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        message = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        hint = "remove the tag: experiment files hold plain values" if "tag" in message else None
        return _problem(source, mark, (), f"not valid YAML: {message}", hint)
    return Problem(source, "", f"not valid YAML: {exc}")


_FILE_PROBLEMS = {
    "missing": ("no such file", "check the path"),
    "folder": ("is a folder, not a file", "name a .yaml file"),
    "large": (f"file is larger than {MAX_BYTES} bytes", "is it an experiment file?"),
}


def load(path: Path, source: str | None = None) -> Document:
    """Read and parse a YAML file, with clear errors for a missing or unreadable file (a
    device or a pipe is refused unread; no more than MAX_BYTES are read)."""
    shown = source or str(path)
    try:
        raw = read_bytes(path, shown, MAX_BYTES)
    except FileProblem as exc:
        reason, hint = _FILE_PROBLEMS.get(exc.kind, (exc.reason, None))
        raise SpecError([Problem(shown, "", reason, hint)]) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SpecError(
            [Problem(f"{shown}:{line}", "", "file is not UTF-8 text", "save it as UTF-8")]
        ) from None
    return loads(text, shown)


def parse_value(text: str) -> Any:
    """A `--set key=value` value, read as YAML would read it (`0.01`, `true`, `[8, 4]`);
    text that is not YAML stays text. The file's caps apply: a value past them, or with a
    duplicate key or an unreadable number, raises SpecError."""
    try:
        found, walker = _walk(text, "--set")
    except _Refused as exc:
        raise SpecError([_yaml_problem(exc, text, "--set")]) from None
    except yaml.YAMLError:
        return text
    if walker.problems:
        raise SpecError(walker.problems)
    value = None if found is None else found[0]
    return text if value is None and text.strip() not in ("null", "~") else value


def dump(data: Any) -> str:
    """YAML text of plain values, keys in the given order."""
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None, allow_unicode=True)
