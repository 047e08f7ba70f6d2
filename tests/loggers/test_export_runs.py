"""`nncli export-runs`: runs trained without a logger replayed into TensorBoard and MLflow,
read back with their own readers; each run is sent once, and a damaged one stops the
command before anything is sent."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from conftest import info, interrupted_run
from readback import (  # the fixtures too
    QUIET,
    artifacts,
    history,
    images,
    own_folder_fixture,  # noqa: F401
    scalars,
    tracking_store,  # noqa: F401
)
from typer.testing import CliRunner

from nncli.cli.app import app
from nncli.loggers.tensorboard import tag
from nncli.runs.record import flatten

pytestmark = QUIET


def rows(folder: Path) -> list[dict[str, float]]:
    with (folder / "metrics.csv").open() as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


@pytest.fixture
def two_runs(
    runner: CliRunner, tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, Path]:
    """A runs folder with a completed run and one interrupted after epoch 2, no loggers."""
    interrupted = interrupted_run(runner, tiny, tmp_path / "runs", monkeypatch, at=2)
    result = runner.invoke(app, ["train", str(tiny), "--runs-dir", str(tmp_path / "runs"), "-q"])
    assert result.exit_code == 0, result.output
    return Path(result.stdout.strip()), interrupted


def mlflow_id(tracking: str, folder: Path) -> list[str]:
    """The MLflow runs tagged with `folder`, in any experiment."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking)
    ids = [e.experiment_id for e in client.search_experiments()]
    found = client.search_runs(ids, f"tags.`nncli.run_folder` = '{folder.resolve()}'")
    return [r.info.run_id for r in found]


def test_runs_go_to_tensorboard_with_every_scalar_once(
    runner: CliRunner, two_runs: tuple[Path, Path], tmp_path: Path
) -> None:
    done, interrupted = two_runs
    result = runner.invoke(
        app, ["export-runs", str(tmp_path / "runs"), "--to", "tensorboard", "--log-dir", "tb"]
    )
    assert result.exit_code == 0, result.output
    tb = (tmp_path / "tb").resolve()
    assert sorted(result.stdout.splitlines()) == sorted(
        f"{tmp_path / 'runs' / run.name} -> {tb / run.name}" for run in two_runs
    )
    for run, epochs in ((done, [1, 2, 3]), (interrupted, [1, 2])):
        table = rows(run)
        found = scalars(tb / run.name)
        columns = [c for c in table[0] if c != "epoch"]
        assert sorted(found) == sorted(tag(c) for c in columns)
        for column in columns:
            assert found[tag(column)] == [
                (int(r["epoch"]), pytest.approx(r[column], rel=1e-6)) for r in table
            ]
        assert [s for s, _ in found["loss/train"]] == epochs
    assert images(tb / done.name) == sorted(f"plots/{p.stem}" for p in (done / "plots").iterdir())
    assert not (done / "loggers.json").exists()  # the run folders are only read

    events = sorted(tb.rglob("*"))
    again = runner.invoke(
        app, ["export-runs", str(tmp_path / "runs"), "--to", "tensorboard", "--log-dir", "tb"]
    )
    assert again.exit_code == 0, again.output
    assert again.stdout == ""
    assert (
        f"warning {tmp_path / 'runs' / done.name} skipped: already has TensorBoard events in {tb / done.name}"
        in again.stderr
    )
    assert sorted(tb.rglob("*")) == events


def test_runs_go_to_mlflow_with_params_history_artifacts_and_status(
    runner: CliRunner, two_runs: tuple[Path, Path], tmp_path: Path, tracking: str
) -> None:
    done, interrupted = two_runs
    result = runner.invoke(app, ["export-runs", str(done), str(interrupted), "--to", "mlflow"])
    assert result.exit_code == 0, result.output
    for run, status in ((done, "FINISHED"), (interrupted, "KILLED")):
        [run_id] = mlflow_id(tracking, run)
        assert f"{run} -> MLflow run {run_id} at {tracking}" in result.stdout
        got = __import__("mlflow").MlflowClient(tracking).get_run(run_id)
        assert got.info.status == status
        assert got.info.run_name == run.name
        config = flatten(yaml.safe_load((run / "config.yaml").read_text()))
        assert got.data.params == {
            k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()
        }
        table = rows(run)
        for column in (c for c in table[0] if c != "epoch"):
            assert history(tracking, run_id, column) == [
                (int(r["epoch"]), pytest.approx(r[column], rel=1e-12)) for r in table
            ]
        figures = sorted(f"plots/{p.name}" for p in (run / "plots").glob("*.png"))
        assert artifacts(tracking, run_id, "plots") == figures
        assert "config.yaml" in artifacts(tracking, run_id)
    assert info(interrupted)["status"] == "interrupted"

    again = runner.invoke(app, ["export-runs", str(tmp_path / "runs"), "--to", "mlflow"])
    assert again.exit_code == 0, again.output
    assert again.stdout == ""
    assert again.stderr.count("skipped: already in MLflow as run") == 2
    assert len(mlflow_id(tracking, done)) == 1


def test_a_damaged_run_stops_the_export_before_anything_is_sent(
    runner: CliRunner, two_runs: tuple[Path, Path], tmp_path: Path, tracking: str
) -> None:
    done, interrupted = two_runs
    metrics = interrupted / "metrics.csv"
    lines = metrics.read_text().splitlines(keepends=True)
    metrics.write_text(lines[0] + lines[1].replace(",", ",x", 1) + "".join(lines[2:]))
    for to in ("mlflow", "tensorboard"):
        result = runner.invoke(
            app, ["export-runs", str(tmp_path / "runs"), "--to", to, "--log-dir", "tb"]
        )
        assert result.exit_code == 2, result.output
        assert result.stderr == f"error {interrupted}/metrics.csv line 2 is not numbers\n"
        assert "Traceback" not in result.output
    assert not (tmp_path / "tb").exists()
    assert mlflow_id(tracking, done) == []


def test_a_path_without_runs_is_refused(runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["export-runs", str(tmp_path / "empty"), "--to", "tensorboard"])
    assert result.exit_code == 2, result.output
    assert result.stderr == (
        f"error {tmp_path / 'empty'} is not a run folder nor a folder of run folders "
        "(no run.json)\n"
    )


def test_a_sweep_folder_sends_its_trials(
    runner: CliRunner, two_runs: tuple[Path, Path], tmp_path: Path
) -> None:
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "sweep.json").write_text("{}")
    (tmp_path / "runs").rename(sweep / "runs")  # a sweep keeps its trials in runs/
    result = runner.invoke(
        app, ["export-runs", str(sweep), "--to", "tensorboard", "--log-dir", "tb"]
    )
    assert result.exit_code == 0, result.output
    tb = (tmp_path / "tb").resolve()
    assert sorted(result.stdout.splitlines()) == sorted(
        f"{sweep / 'runs' / run.name} -> {tb / run.name}" for run in two_runs
    )
