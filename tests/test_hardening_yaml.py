"""Hostile and broken experiment files: every one is refused with nncli's own located error
(exit 2, no traceback, nothing written), or read as the text the user wrote; never run."""

from __future__ import annotations

import os
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import EXPERIMENTS, TINY
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from nncli.cli.app import app
from nncli.config import yamlio
from nncli.config.spec import Spec, load_spec, resolved, validate
from nncli.errors import NncliError, SpecError


def problems(text: str, overrides: tuple[str, ...] = ()) -> list[str]:
    with pytest.raises(SpecError) as info:
        validate(yamlio.loads(text, "exp.yaml"), overrides)
    return [str(p) for p in info.value.problems]


def train_refused(runner: CliRunner, path: Path, tmp_path: Path, *args: str) -> str:
    """stderr of `nncli train` that must fail with exit 2, no traceback and no run folder."""
    before = sorted(tmp_path.rglob("*"))
    result = runner.invoke(app, ["train", str(path), "--runs-dir", str(tmp_path / "runs"), *args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.stdout == ""
    assert sorted(tmp_path.rglob("*")) == before  # nothing written, not even the runs folder
    return result.stderr


# --- YAML 1.1 surprises -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        (
            "device: cpu}",
            "device: cpu, shuffle: no}",
            "exp.yaml:16:49  train.shuffle  Input should be a valid boolean, got 'no'  "
            "(write false)",
        ),
        (
            "device: cpu}",
            "device: cpu, shuffle: On}",
            "exp.yaml:16:49  train.shuffle  Input should be a valid boolean, got 'On'  "
            "(write true)",
        ),
        (
            "epochs: 3",
            "epochs: 010",
            "exp.yaml:16:9  train.epochs  Input should be a valid integer, got '010'  "
            "(write 10 without the leading zero (YAML 1.1 reads 010 as octal))",
        ),
        (
            "seed: 7",
            "seed: 1:30",
            "exp.yaml:2:1  seed  Input should be a valid integer, got '1:30'  "
            "(write the number itself (YAML 1.1 reads a:b as a*60+b))",
        ),
        (
            "lr: 0.05",
            "lr: 0:05",
            "exp.yaml:15:25  optimizer.adam.lr  Input should be a valid number, got '0:05'  "
            "(write the number itself (YAML 1.1 reads a:b as a*60+b))",
        ),
        (
            "name: tiny",
            "name: 2024",
            "exp.yaml:1:1  name  Input should be a valid string, got 2024  "
            "(quote it to make it text: '2024')",
        ),
        (
            "epochs: 3",
            "epochs: true",
            "exp.yaml:16:9  train.epochs  Input should be a valid integer, got True",
        ),
        (
            "epochs: 3",
            "epochs: '3'",
            "exp.yaml:16:9  train.epochs  Input should be a valid integer, got '3'",
        ),
        (
            "batch_size: 32",
            "batch_size: 32.0",
            "exp.yaml:16:20  train.batch_size  Input should be a valid integer, got 32.0",
        ),
    ],
)
def test_yaml_1_1_readings_and_lax_types_are_refused_with_the_fix(
    before: str, after: str, expected: str
) -> None:
    assert problems(TINY.replace(before, after)) == [expected]


@pytest.mark.parametrize("text", ["no", "Off", "y", "010", "0777", "2001-12-14"])
def test_where_text_is_meant_yaml_1_1_forms_stay_the_text_written(text: str) -> None:
    spec = validate(yamlio.loads(TINY.replace("name: tiny", f"name: {text}")))
    assert spec.name == text


def test_override_values_read_like_the_file() -> None:
    assert problems(TINY, ("train.shuffle=off",)) == [
        "--set train.shuffle=off  train.shuffle  Input should be a valid boolean, got 'off'  "
        "(write false)"
    ]
    assert yamlio.parse_value("0x10") == 16  # explicit bases are kept
    assert yamlio.parse_value("1_000") == 1000


@pytest.mark.parametrize("value", [".nan", ".NaN", ".inf", "-.inf", "1e999", "-1e999"])
@pytest.mark.parametrize(
    ("key", "where"),
    [
        ("lr: 0.05", "exp.yaml:15:25  optimizer.adam.lr"),
        ("noise: 0.05", "exp.yaml:6:3  data.circles.noise"),
        ("val: 0.2", "exp.yaml:7:11  data.circles.split.val"),
    ],
)
def test_non_finite_numbers_are_refused_where_a_number_is_meant(
    value: str, key: str, where: str
) -> None:
    name = key.split(":", maxsplit=1)[0]
    (found,) = problems(TINY.replace(key, f"{name}: {value}"))
    assert found.startswith(f"{where}  Input should be a finite number, got ")


# --- caps: aliases, merges, nesting, size ---------------------------------------------------

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


# --- tags and names: nothing is imported or run, no folder escapes ------------------------


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
    "name", ["../escaped", "a/b", "..", "/tmp/abs", "a\\b", ".hidden", "~root"]
)
def test_a_run_name_is_never_a_path(
    runner: CliRunner, write: Callable[..., Path], tmp_path: Path, name: str
) -> None:
    path = write(TINY.replace("name: tiny", f"name: '{name}'"))
    stderr = train_refused(runner, path, tmp_path)
    assert f"error {path}:1:1  name  a run name holds letters, digits and _ . + - only" in stderr
    assert not (tmp_path.parent / "escaped").exists()


def test_names_from_the_file_stem_are_one_path_component(write: Callable[..., Path]) -> None:
    for stem in ("..", "a b", "weird:name", "ü"):
        name = load_spec(write(TINY.replace("name: tiny\n", ""), f"{stem}.yaml")).name
        assert name is not None
        assert os.sep not in name
        assert Path(f"stamp_{name}_0000").name == f"stamp_{name}_0000"


def test_registry_names_are_looked_up_never_imported(
    write: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "imported"
    (tmp_path / "evilmod.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    text = (
        TINY.replace("loss: bce", "loss: evilmod")
        .replace("name: adam", "name: evilmod.thing")
        .replace("- tanh", "- evilmod:Layer")
        .replace("source: circles", "source: os.path")
    )
    found = problems(text)
    assert [p.split("  ")[1:3] for p in found] == [
        ["data", "unknown dataset 'os.path'"],
        ["model.layers.1", "unknown layer 'evilmod:Layer'"],
        ["loss", "unknown loss 'evilmod'"],
        ["optimizer", "unknown optimizer 'evilmod.thing'"],
    ]
    assert not marker.exists()
    assert "evilmod" not in sys.modules


# --- overrides are as untrusted as the file ------------------------------------------------


def test_hostile_override_values_are_refused_and_never_run(
    runner: CliRunner, tiny: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    cases = {
        f"name=!!python/object/apply:os.system ['touch {marker}']": (
            "--set name=!!python/object/apply:os.system"
        ),
        "seed=1" + "0" * 5000: "seed  a number of 5001 digits is too long",
        "metrics=" + "[" * 100 + "]" * 100: "metrics  nested more than 64 levels deep",
        "train={epochs: 1, epochs: 2}": "train  duplicate key",
    }
    for setting, fragment in cases.items():
        stderr = train_refused(runner, tiny, tmp_path, "--set", setting)
        assert fragment in stderr, stderr
    assert not marker.exists()


# --- every refusal through the command line -------------------------------------------------


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


def test_brackets_in_a_file_are_printed_not_read_as_markup(
    runner: CliRunner, write: Callable[..., Path]
) -> None:
    path = write(TINY + "'[/x]': 1\n'[bold]b': 2\n")
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "unknown key '[/x]'" in result.stderr
    assert "unknown key '[bold]b'" in result.stderr


# --- property: any file gives a Spec or nncli's own error, never another exception ---------

BASES = [TINY, *(p.read_text() for p in sorted(EXPERIMENTS.glob("*.yaml"))[:6])]
TOKENS = [
    *("no", "Yes", "on", "OFF", "y", "true", "~", "null", "", "''", '""', "-0", "0x1F", "0b2"),
    *("010", "0o17", "1:30", "1_000", ".nan", "-.inf", "1e999", "1" + "0" * 4400, "2001-13-45"),
    *("[", "]", "{", "}", "[]", "{}", "{a: 1}", "[1, [2, [3]]]", "- a", "? a", ": b", "|", ">-"),
    *("&a x", "*a", "*zz", "<<", "<<: *a", "{<<: [*a, *a]}", "&a [*a]", "!!str", "!foo x"),
    *("!!python/name:os.system", "!!python/object/apply:os.system [x]", "!!binary 'a!b'"),
    *("!!int x", "!!float y", "!!bool z", "!!timestamp q", "!!set {a}", "!!omap [a: 1]"),
    *("%YAML 1.1\n---", "---", "...", "#", "\t", "\x07", "\ufeff", "\r", "é", "'\\x'", '"\\q"'),
    *("dense: 0", "dense: -1", "gelu", "dense", "type: conv2d", "name: huber", "source: csv"),
    *("units: 2", "split: {val: 0.9, test: 0.9}", "metrics: [r2]", "monitor: val_f1"),
]
KEYS = ["seed", "name", "data", "model", "loss", "train", "optimizer", "sweep", "metrics"]
SETTINGS = [
    "train.epochs",
    "optimizer.lr",
    "model.layers.0",
    "model.layers.0.dense",
    "model.layers.9.x",
    "data.split.val",
    "loss",
    "loss.name",
    "name",
    "seed.0",
    "metrics.0.x",
    "sweep.range.lr",
    "",
    ".",
]

text_or_token = st.one_of(
    st.sampled_from(TOKENS),
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=12),
    st.text(max_size=6),  # any character, control characters and surrogates included
)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A real experiment file, changed a few times the way people and transfers break files."""
    lines = draw(st.sampled_from(BASES)).splitlines(keepends=True)
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, max(len(lines) - 1, 0)))
        j = draw(st.integers(0, max(len(lines) - 1, 0)))
        how = draw(st.integers(0, 7))
        if not lines:
            lines = [draw(text_or_token) + "\n"]
        elif how == 0:
            del lines[i]
        elif how == 1:
            lines.insert(i, lines[j])
        elif how == 2:
            lines[i], lines[j] = lines[j], lines[i]
        elif how == 3:  # a new value
            key, sep, _ = lines[i].partition(": ")
            lines[i] = f"{key}{sep or ': '}{draw(text_or_token)}\n"
        elif how == 4:  # a new key
            indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
            _, _, value = lines[i].partition(":")
            key = draw(st.one_of(st.sampled_from(KEYS), text_or_token))
            lines[i] = f"{indent}{key}:{value or ' 1'}\n".replace("\n\n", "\n")
        elif how == 5:  # indentation moved
            lines[i] = " " * draw(st.integers(0, 6)) + lines[i].lstrip(" ")
        elif how == 6:  # text inserted anywhere
            at = draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:at] + draw(text_or_token) + lines[i][at:]
        else:  # cut off
            lines = lines[:i]
    raw = bytearray("".join(lines).encode("utf-8", "surrogatepass"))
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):  # now and then a damaged byte
        if raw:
            raw[draw(st.integers(0, len(raw) - 1))] = draw(st.integers(0, 255))
    return bytes(raw)


settings.register_profile(
    "ci",
    max_examples=int(os.environ.get("NNCLI_HYPOTHESIS_EXAMPLES", "400")),
    deadline=None,
    derandomize=True,  # the same examples on every run: CI fails only on a change of code
    database=None,  # writes nothing into the checkout
    suppress_health_check=[HealthCheck.too_slow],
)


@settings(settings.get_profile("ci"))
@given(
    raw=mutated(),
    overrides=st.lists(
        st.tuples(st.sampled_from(SETTINGS), text_or_token).map(lambda kv: f"{kv[0]}={kv[1]}"),
        max_size=2,
    ),
)
def test_any_file_gives_a_spec_or_an_nncli_error(
    tmp_path_factory: pytest.TempPathFactory, raw: bytes, overrides: list[str]
) -> None:
    path = tmp_path_factory.getbasetemp() / "fuzz.yaml"
    path.write_bytes(raw)
    try:
        spec = load_spec(path, overrides)
    except NncliError as exc:
        assert str(exc)  # a message for the user
        return
    assert isinstance(spec, Spec)
    # what a run folder keeps (config.yaml, without the sweep) reads back as the same spec
    again = validate(yamlio.loads(yamlio.dump(resolved(spec))))
    assert again == spec.model_copy(update={"sweep": None})
