"""Where a problem is and how to fix it: values YAML 1.1 reads differently, and lax
types, are refused at their line with the fix."""

from __future__ import annotations

import pytest
from conftest import TINY, problems


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
