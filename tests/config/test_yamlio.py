from __future__ import annotations

import contextlib
import os
import threading
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import TINY, problems, train_refused
from typer.testing import CliRunner

from nncli.config import yamlio
from nncli.config.spec import validate
from nncli.errors import SpecError


def test_positions_of_keys_and_items() -> None:
    doc = yamlio.loads("a: 1\nb:\n  - dense: 16\n  - gelu\n", "f.yaml")
    assert doc.data == {"a": 1, "b": [{"dense": 16}, "gelu"]}
    assert doc.positions[("b",)] == (2, 1)
    assert doc.positions[("b", 1)] == (4, 5)
    assert doc.where(("b", 0, "dense", "units")) == "f.yaml:3:5"


@pytest.mark.parametrize(
    ("text", "value"),
    [("1e-3", 0.001), ("-2E+2", -200.0), ("0.5", 0.5), (".5", 0.5), ("3", 3), ("'1e-3'", "1e-3")],
)
def test_numbers_people_write(text: str, value: object) -> None:
    got = yamlio.loads(f"lr: {text}\n").data["lr"]
    assert got == value
    assert type(got) is type(value)


def test_duplicate_keys_are_errors_naming_both_lines() -> None:
    with pytest.raises(SpecError) as info:
        yamlio.loads("train:\n  epochs: 1\n  epochs: 2\n", "f.yaml")
    assert (
        str(info.value)
        == "f.yaml:3:3  train.epochs  duplicate key  (first given at line 2; keep one)"
    )


def test_python_tags_are_refused_and_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    text = f"x: !!python/object/apply:os.system ['touch {marker}']\n"
    with pytest.raises(SpecError) as info:
        yamlio.loads(text, "evil.yaml")
    assert "evil.yaml:1:4" in str(info.value)
    assert "remove the tag" in str(info.value)
    assert not marker.exists()


def test_alias_bomb_is_refused_quickly() -> None:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 10) + "]")
    with pytest.raises(SpecError) as info:
        yamlio.loads("\n".join(lines) + "\n", "bomb.yaml")
    assert "expands to more than" in str(info.value)


def test_syntax_error_has_line_and_column() -> None:
    with pytest.raises(SpecError) as info:
        yamlio.loads("a: [1, 2\nb: 3\n", "f.yaml")
    assert str(info.value).startswith("f.yaml:")
    assert "not valid YAML" in str(info.value)


def test_missing_file_and_non_utf8(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no such file"):
        yamlio.load(tmp_path / "nope.yaml")
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(SpecError, match="not UTF-8"):
        yamlio.load(bad)


def test_byte_order_mark_is_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbfseed: 3\n")
    assert yamlio.load(path).data == {"seed": 3}


def test_parse_value_reads_like_yaml() -> None:
    assert yamlio.parse_value("0.01") == 0.01
    assert yamlio.parse_value("1e-4") == 1e-4
    assert yamlio.parse_value("true") is True
    assert yamlio.parse_value("[8, 4]") == [8, 4]
    assert yamlio.parse_value("adam") == "adam"
    assert yamlio.parse_value("") == ""


@pytest.mark.parametrize("text", ["no", "Off", "y", "010", "0777", "2001-12-14"])
def test_where_text_is_meant_yaml_1_1_forms_stay_the_text_written(text: str) -> None:
    spec = validate(yamlio.loads(TINY.replace("name: tiny", f"name: {text}")))
    assert spec.name == text


BILLION_LAUGHS = "\n".join(
    ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    + [
        f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 10) + "]"
        for prev, name in zip("abcdefgh", "bcdefghi", strict=True)
    ]
)


def _merge_bomb(levels: int) -> str:
    """Maps nested in one value, each merging the one inside it ten times: 10^levels pairs
    once flattened, all before the walker counts a single value."""
    inner = "&m0 {k: 1}"
    for i in range(1, levels + 1):
        inner = f"&m{i} {{<<: [{inner}" + f", *m{i - 1}" * 9 + "]}"
    return f"top: {inner}\n"


MERGE_BOMB = _merge_bomb(9)


NESTED = "a: " + "[" * 200_000 + "]" * 200_000  # under the size cap; recursion would overflow


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (BILLION_LAUGHS, "e  the file expands to more than 100000 values"),
        (MERGE_BOMB, "<top>  merge keys (<<) expand to more than 100000 values"),
        (NESTED, "<top>  nested more than 64 levels deep"),
    ],
    ids=["aliases", "merges", "nesting"],
)
def test_bombs_are_refused_in_well_under_a_second_with_little_memory(
    text: str, message: str
) -> None:
    # the time (~0.2 s here) is left to bench-style measurement: a timed assertion fails on
    # a loaded machine; the bounded work shows as the memory bound below
    with pytest.raises(SpecError) as info:
        yamlio.loads(text, "bomb.yaml")
    assert str(info.value).startswith("bomb.yaml:1:")
    assert message in str(info.value)
    tracemalloc.start()
    try:
        with pytest.raises(SpecError):
            yamlio.loads(text, "bomb.yaml")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 100 * 2**20, f"peak {peak / 2**20:.0f} MiB"


def test_the_depth_cap_is_64_levels() -> None:
    deepest = yamlio.loads("a: " + "[" * 63 + "1" + "]" * 63).data["a"]
    for _ in range(63):
        deepest = deepest[0]
    assert deepest == 1  # the top map and 63 lists: 64 levels
    with pytest.raises(SpecError, match="nested more than 64 levels deep"):
        yamlio.loads("a: " + "[" * 64 + "1" + "]" * 64)


def test_a_recursive_alias_is_refused() -> None:
    with pytest.raises(SpecError, match="the file expands to nesting too deep"):
        yamlio.loads("a: &a [*a]\n", "f.yaml")


def test_merges_keep_yaml_semantics_and_duplicates_stay_errors() -> None:
    doc = yamlio.loads(
        "base: &b {lr: 0.1, name: adam}\n"
        "opt: {<<: *b, lr: 0.01}\n"
        "again: *b\n"
        "other: &o {lr: 0.5, momentum: 0.9}\n"
        "both: {<<: [*b, *o]}\n",
        "f.yaml",
    )
    assert doc.data["opt"] == {"name": "adam", "lr": 0.01}  # written keys override merged
    assert doc.data["again"] == {"lr": 0.1, "name": "adam"}  # the anchor itself is unchanged
    assert doc.data["both"] == {"lr": 0.1, "name": "adam", "momentum": 0.9}  # first map wins
    assert doc.where(("opt", "lr")) == "f.yaml:2:15"
    assert doc.where(("opt", "name")) == "f.yaml:1:20"  # where the merged value is written
    with pytest.raises(SpecError, match="duplicate key"):
        yamlio.loads("base: &b {x: 1}\nopt: {<<: *b, y: 1, y: 2}\n")


def test_size_cap_nul_bytes_encodings_and_control_characters(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_bytes(b"# " + b"x" * yamlio.MAX_BYTES + b"\n")
    with pytest.raises(SpecError) as info:
        yamlio.load(big)
    assert str(info.value) == (
        f"{big}  <top>  file is larger than 1000000 bytes  (is it an experiment file?)"
    )

    nul = tmp_path / "nul.yaml"
    nul.write_bytes(b"seed: 1\x00\n")
    with pytest.raises(SpecError, match=r"nul.yaml  <top>  file contains NUL bytes"):
        yamlio.load(nul)

    utf16 = tmp_path / "utf16.yaml"
    utf16.write_bytes("seed: 1\n".encode("utf-16"))
    with pytest.raises(SpecError, match=r"utf16.yaml:1  <top>  file is not UTF-8 text"):
        yamlio.load(utf16)

    bell = tmp_path / "bell.yaml"
    bell.write_bytes(b"seed: 1\nname: a\x07b\n")
    with pytest.raises(SpecError) as info:
        yamlio.load(bell)
    assert str(info.value) == (
        f"{bell}:2:8  <top>  character U+0007 is not allowed in YAML  "
        "(delete it, or write it as \\x07 in a double-quoted string)"
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("!!int abc", "exp.yaml:16:17  train.epochs  cannot read 'abc' as int  "),
        ("!!bool maybe", "exp.yaml:16:17  train.epochs  cannot read 'maybe' as bool  "),
        ("!!timestamp 2001-13-45", "exp.yaml:16:17  train.epochs  cannot read '2001-13-45' as"),
        ("1" + "0" * 5000, "exp.yaml:16:17  train.epochs  a number of 5001 digits is too long"),
    ],
    ids=["int", "bool", "timestamp", "huge"],
)
def test_values_that_cannot_be_read_are_located_problems(value: str, expected: str) -> None:
    (found,) = problems(TINY.replace("epochs: 3", f"epochs: {value}"))
    assert found.startswith(expected)


@pytest.mark.parametrize(
    "payload",
    [
        "!!python/object/apply:os.system ['touch {marker}']",
        "!!python/object/apply:os.system {{args: ['touch {marker}']}}",
        "!!python/object/new:os.system [['touch {marker}']]",
        "!!python/name:os.system",
        "!!python/module:os",
        "[!!python/object/apply:os.system ['touch {marker}']]",
        "{{a: !!python/object/apply:os.system ['touch {marker}']}}",
    ],
)
def test_python_tags_in_any_form_are_refused_by_train(
    runner: CliRunner, write: Callable[..., Path], tmp_path: Path, payload: str
) -> None:
    marker = tmp_path / "pwned"
    path = write(TINY.replace("name: tiny", f"name: {payload.format(marker=marker)}"))
    stderr = train_refused(runner, path, tmp_path)
    assert stderr.startswith(f"error {path}:1:")
    assert "<top>  not valid YAML: could not determine a constructor for the tag" in stderr
    assert "(remove the tag: experiment files hold plain values)" in stderr
    assert not marker.exists()


@pytest.mark.parametrize(
    "text",
    [
        BILLION_LAUGHS,
        NESTED,
        TINY.replace("epochs: 3", "epochs: !!int abc"),
        TINY.replace("seed: 7", "seed: " + "9" * 5000),
        TINY + "\x07\n",
        TINY.replace("lr: 0.05", "lr: .inf"),
    ],
    ids=["aliases", "nesting", "bad-tag-value", "huge-int", "control-char", "inf"],
)
def test_train_refuses_with_exit_2_and_writes_nothing(
    runner: CliRunner, write: Callable[..., Path], tmp_path: Path, text: str
) -> None:
    path = write(text)
    stderr = train_refused(runner, path, tmp_path)
    assert stderr.startswith(f"error {path}")


def _end(fifo: Path) -> None:
    with contextlib.suppress(OSError):  # no reader: nothing to end
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


@pytest.mark.parametrize("kind", ["device", "fifo"])
def test_a_device_or_a_pipe_is_refused_unread(runner: CliRunner, tmp_path: Path, kind: str) -> None:
    # /dev/zero was read until memory ran out; a FIFO with no writer blocked for ever
    path = Path("/dev/zero")
    if kind == "fifo":
        path = tmp_path / "exp.yaml"
        os.mkfifo(path)
        # should the FIFO be opened for reading, a writer comes after a while and ends it
        threading.Timer(5, _end, [path]).start()
    stderr = train_refused(runner, path, tmp_path)
    assert stderr == (
        f"error {path}  <top>  is not a regular file (a device, a pipe or a socket); name a file\n"
    )


def test_a_lone_surrogate_in_the_file_is_a_located_problem(
    runner: CliRunner, tmp_path: Path, write: Callable[..., Path]
) -> None:
    # it was a UnicodeEncodeError traceback: pydantic and the terminal cannot encode it
    path = write(TINY.replace("loss: bce", 'loss: "\\ud800"'))
    stderr = train_refused(runner, path, tmp_path)
    assert stderr == (
        f"error {path}:14:7  loss  the text holds U+D800, half of a surrogate pair and not a "
        "character  (write the character itself, or its \\UXXXXXXXX escape)\n"
    )
