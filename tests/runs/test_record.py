"""A run folder read back for show, resume and export: a damaged run.json is one clear
error, and is never rewritten."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import info
from typer.testing import CliRunner

from nncli.cli.app import app


def test_a_damaged_run_json_is_one_clear_error_and_is_not_rewritten(
    runner: CliRunner, checkpoint: Path
) -> None:
    folder = checkpoint.parent.parent
    for text, message in {
        json.dumps({**info(folder), "status": "interrupted", "epochs_done": "many"}): (
            'run.json: epochs_done should be a whole number, not "many" '
            "(edited by hand? fix or delete it)"
        ),
        json.dumps({**info(folder), "started_at": "yesterday", "n_params": 1.5}): (
            "run.json: started_at should be a time with its UTC offset (ISO 8601), not "
            '"yesterday"; n_params should be a whole number, not 1.5 (edited by hand? '
            "fix or delete them)"
        ),
        "[1, 2]": "run.json: holds a list, not an object",
        '{"status": ': "run.json: not JSON (Expecting value: line 1 column 12 (char 11))",
    }.items():
        (folder / "run.json").write_text(text)
        for command in ("show", "resume", "export"):
            result = runner.invoke(app, [command, str(folder)])
            assert result.exit_code == 2, result.output
            assert result.stderr == f"error {folder}/{message}\n", command
        assert (folder / "run.json").read_text() == text  # never rewritten
        listed = runner.invoke(app, ["runs", str(folder.parent), "--format", "json"])
        assert listed.exit_code == 0, listed.output
