from __future__ import annotations

from pathlib import Path

import pytest

from nncli.config import yamlio
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
