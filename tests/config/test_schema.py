"""`nncli schema` is a strict JSON Schema: an independent validator (check-jsonschema)
agrees with `nncli validate` on every example and on a folder of broken files."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import EXPERIMENTS, ROOT
from typer.testing import CliRunner

from nncli.cli.app import app
from nncli.config.spec import schema

BROKEN = sorted((ROOT / "tests" / "assets" / "broken").glob("*.yaml"))


def _checker() -> str:
    found = Path(sys.executable).with_name("check-jsonschema")
    return str(found) if found.is_file() else shutil.which("check-jsonschema") or ""


@pytest.fixture(scope="module")
def schema_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("schema") / "nncli.schema.json"
    path.write_text(json.dumps(schema()))
    return path


def _accepted(schema_file: Path, *files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_checker(), "--schemafile", str(schema_file), *map(str, files)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_schema_declares_its_dialect_and_only_json_schema_keywords() -> None:
    made = schema()
    assert made["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    text = json.dumps(made)
    for pydantic_only in ('"gt":', '"ge":', '"lt":', '"le":'):
        assert pydantic_only not in text


def test_every_example_passes_the_independent_validator(schema_file: Path) -> None:
    examples = sorted(EXPERIMENTS.glob("*.yaml"))
    result = _accepted(schema_file, *examples)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("broken", BROKEN, ids=[p.stem for p in BROKEN])
def test_a_broken_file_is_refused_by_both(
    broken: Path, schema_file: Path, runner: CliRunner
) -> None:
    ours = runner.invoke(app, ["validate", str(broken)])
    assert ours.exit_code == 2, ours.output
    theirs = _accepted(schema_file, broken)
    assert theirs.returncode == 1, theirs.stdout + theirs.stderr
    assert "Schema validation errors were encountered" in theirs.stdout + theirs.stderr


def test_keras_activation_beside_a_layer_passes_both(
    schema_file: Path, runner: CliRunner, tmp_path: Path
) -> None:
    path = tmp_path / "keras.yaml"
    path.write_text(
        "data: circles\nmodel:\n  layers:\n    - {dense: 8, activation: relu}\n"
        "    - {type: dense, units: 4, activation: tanh}\n    - dense: 1\nloss: bce_with_logits\n"
    )
    assert runner.invoke(app, ["validate", str(path)]).exit_code == 0
    assert _accepted(schema_file, path).returncode == 0
    path.write_text(path.read_text().replace("activation: relu", "activation: relux"))
    assert runner.invoke(app, ["validate", str(path)]).exit_code == 2
    assert _accepted(schema_file, path).returncode == 1
