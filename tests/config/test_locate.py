"""Where a problem is and how to fix it: values YAML 1.1 reads differently, and lax
types, are refused at their line with the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import TINY, problems, train_refused
from typer.testing import CliRunner


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
            "exp.yaml:15:25  optimizer.lr  Input should be a valid number, got '0:05'  "
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


def test_a_metric_given_twice_is_located_at_its_second_mention() -> None:
    # it trained, and metrics.csv had two columns of one name
    text = TINY.replace("metrics: [accuracy, f1]", "metrics: [accuracy, f1, accuracy]")
    assert problems(text) == [
        "exp.yaml:17:25  metrics.2  'accuracy' is already metrics.0; give each metric once"
    ]
    assert problems(TINY, ("metrics=[f1, f1]",)) == [
        "--set metrics=[f1, f1]  metrics.1  'f1' is already metrics.0; give each metric once"
    ]


def test_control_characters_in_a_message_are_shown_escaped(
    runner: CliRunner, tiny: Path, tmp_path: Path
) -> None:
    # the terminal dropped the \x07: "unknown loss 'bce' (did you mean 'bce'?)"
    stderr = train_refused(runner, tiny, tmp_path, "--set", 'loss="bce\\x07"')
    assert stderr == (
        "error --set loss=\"bce\\x07\"  loss  unknown loss 'bce\\x07'  (did you mean 'bce'?)\n"
    )


def test_error_keys_are_the_files_own_path_without_union_tags() -> None:
    # pydantic's location holds the member's tag (data.digits.splt): not a key of the file
    from nncli.config import yamlio
    from nncli.config.spec import validate
    from nncli.errors import SpecError

    text = (
        "data: {source: digits, splt: 1}\n"
        "model:\n"
        "  layers:\n"
        "    - {type: dense, units: 4, unitz: 3}\n"
        "    - dense: {units: 10, unitz: 3}\n"
        "loss: {name: cross_entropy, wieght: 1}\n"
    )
    with pytest.raises(SpecError) as caught:
        validate(yamlio.loads(text, "x.yaml"))
    keys = [line.split("  ")[1] for line in str(caught.value).splitlines()]
    assert keys == [
        "data.splt",
        "model.layers.0.unitz",
        "model.layers.1.dense.unitz",
        "loss.wieght",
    ]
