"""`nncli runs`: the run folders of a folder, newest first, with their headline metric."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from conftest import info
from test_compare import invoke, runs_json
from typer.testing import CliRunner

from nncli.cli.app import app
from nncli.runs.files import RUN_JSON


def fake_run(parent: Path, name: str, status: str, started: str, loss: float = 0.5) -> Path:
    folder = parent / name
    folder.mkdir(parents=True)
    info = {
        "name": "circles",
        "status": status,
        "started_at": started,
        "epochs_done": 3,
        "duration_s": 1.25,
        "monitor": "test_loss",
        "best": {
            "test_loss": {"value": loss, "epoch": 2},
            "train_accuracy": {"value": 0.99, "epoch": 3},
            "test_accuracy": {"value": 1 - loss, "epoch": 3},
        },
    }
    (folder / RUN_JSON).write_text(json.dumps(info), encoding="utf-8")
    return folder


@pytest.fixture
def listing(tmp_path: Path) -> Path:
    runs = tmp_path / "runs"
    fake_run(runs, "a_oldest", "completed", "2026-11-25T09:00:00+00:00", 0.3)
    fake_run(runs, "b_newest", "running", "2026-11-25T11:00:00+00:00", 0.2)
    fake_run(runs, "c_middle", "failed", "2026-11-25T12:00:00+02:00", 0.1)  # 10:00 UTC
    fake_run(runs, "d_interrupted", "interrupted", "2026-11-25T08:00:00+00:00")
    (runs / "notes.txt").write_text("not a run", encoding="utf-8")
    return runs


def test_runs_lists_newest_first_with_the_headline(listing: Path) -> None:
    rows = runs_json(listing)

    assert [r["run"] for r in rows] == ["b_newest", "c_middle", "a_oldest", "d_interrupted"]
    assert list(rows[0]) == [
        "run",
        "status",
        "started",
        "epochs",
        "duration_s",
        "monitor",
        "best",
        "best epoch",
        "metric",
        "metric best",
    ]
    assert rows[0]["monitor"] == "test_loss"
    assert rows[0]["best"] == 0.2
    assert rows[0]["best epoch"] == 2
    assert (rows[0]["metric"], rows[0]["metric best"]) == ("test_accuracy", 0.8)


def test_runs_marks_smoke_runs(listing: Path) -> None:
    folder = listing / "a_oldest"
    data = json.loads((folder / RUN_JSON).read_text(encoding="utf-8"))
    (folder / RUN_JSON).write_text(json.dumps({**data, "smoke": True}), encoding="utf-8")

    statuses = {r["run"]: r["status"] for r in runs_json(listing)}

    assert statuses["a_oldest"] == "completed (smoke)"
    assert statuses["c_middle"] == "failed"
    assert [r["run"] for r in runs_json(listing, "--status", "completed")] == ["a_oldest"]


def test_runs_status_filter(listing: Path) -> None:
    rows = runs_json(listing, "--status", "failed,completed")
    assert [r["run"] for r in rows] == ["c_middle", "a_oldest"]
    rows = runs_json(listing, "--status", "running", "--status", "interrupted")
    assert [r["run"] for r in rows] == ["b_newest", "d_interrupted"]

    result = invoke("runs", listing, "--status", "done")
    assert result.exit_code == 2
    assert "unknown status done; choose from running, completed" in result.stderr


def test_runs_formats(listing: Path) -> None:
    result = invoke("runs", listing, "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert rows[0]["run"] == "b_newest"
    assert float(rows[0]["best"]) == 0.2

    result = invoke("runs", listing, "--format", "markdown")
    assert result.stdout.splitlines()[0].startswith("| run | status | started |")

    result = invoke("runs", listing)
    assert result.exit_code == 0, result.output
    assert "status" in result.stdout  # a Rich table (its cells fold at 80 columns)
    assert "┏" in result.stdout


def test_runs_shows_unreadable_runs(listing: Path) -> None:
    (listing / "a_oldest" / RUN_JSON).write_text("{", encoding="utf-8")
    rows = runs_json(listing, "--status", "unreadable")
    assert [(r["run"], r["status"]) for r in rows] == [("a_oldest", "unreadable")]


def test_runs_empty_and_missing_folders(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = invoke("runs", tmp_path / "empty")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"no runs in {tmp_path / 'empty'}; train one with")
    assert runs_json(tmp_path / "empty") == []

    result = invoke("runs", tmp_path / "missing")
    assert result.exit_code == 2
    assert result.stderr == f"error {tmp_path / 'missing'} does not exist; " + (
        "train a run first or name its runs folder\n"
    )


def test_brackets_in_run_json_are_shown_not_read_as_markup(
    runner: CliRunner, checkpoint: Path
) -> None:
    folder = checkpoint.parent.parent
    (folder / "run.json").write_text(json.dumps({**info(folder), "status": "[/x]"}))
    result = runner.invoke(app, ["runs", str(folder.parent)])
    assert result.exit_code == 0, result.output
    assert "[/x]" in result.stdout
