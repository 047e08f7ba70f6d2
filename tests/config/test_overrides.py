"""`--set KEY=VALUE`: values read like the file's, and as untrusted as the file."""

from __future__ import annotations

from pathlib import Path

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
