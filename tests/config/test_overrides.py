"""`--set KEY=VALUE`: values read like the file's, and as untrusted as the file."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import TINY, problems, train_refused
from typer.testing import CliRunner

from nncli.config import yamlio


def test_override_values_read_like_the_file() -> None:
    assert problems(TINY, ("train.shuffle=off",)) == [
        "--set train.shuffle=off  train.shuffle  Input should be a valid boolean, got 'off'  "
        "(write false)"
    ]
    assert yamlio.parse_value("0x10") == 16  # explicit bases are kept
    assert yamlio.parse_value("1_000") == 1000


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


@pytest.mark.parametrize(
    ("setting", "shown", "code"),
    [('loss="\\ud800"', 'loss="\\ud800"', "D800"), ("loss=\udcff", "loss=\\udcff", "DCFF")],
)
def test_a_lone_surrogate_in_a_setting_is_refused_at_the_setting(
    runner: CliRunner, tiny: Path, tmp_path: Path, setting: str, shown: str, code: str
) -> None:
    # escaped in YAML, or a command line's bytes that are not UTF-8 (Python reads them as
    # lone surrogates): both were a UnicodeEncodeError traceback
    stderr = train_refused(runner, tiny, tmp_path, "--set", setting)
    assert stderr == (
        f"error --set {shown}  loss  the text holds U+{code}, half of a surrogate pair and "
        "not a character  (write the character itself, or its \\UXXXXXXXX escape)\n"
    )


def test_errors_of_a_whole_section_are_located_at_the_setting_that_caused_them() -> None:
    # they were located at exp.yaml:1:1 (the file), which the setting did not change
    assert problems(TINY, ("train.monitor=val_r2",)) == [
        "--set train.monitor=val_r2  train.monitor  train.monitor 'val_r2' is not logged; "
        "add 'r2' to metrics or monitor a loss"
    ]
    assert problems(TINY, ("metrics=[accuracy, r2]",)) == [
        "--set metrics=[accuracy, r2]  metrics  r2 do(es) not apply to loss 'bce' "
        "(classification); use any of accuracy, precision, recall, f1"
    ]
    assert problems(TINY, ("data.split.val=0.9",)) == [
        "--set data.split.val=0.9  data.split  val + test is 1.1; it must be below 1"
    ]
