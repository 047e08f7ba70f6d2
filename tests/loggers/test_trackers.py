"""The tensorboard and mlflow loggers, read back with TensorBoard's own event reader and
MLflow's client: every scalar per epoch, the params, artifacts and final status; resume
continues the same runs; a tracker that fails never stops training."""

from __future__ import annotations

import csv
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from conftest import TINY, info, interrupted_run, train_refused
from readback import (  # the fixtures too
    QUIET,
    artifacts,
    history,
    images,
    links,
    mlflow_run,
    own_folder_fixture,  # noqa: F401
    scalars,
    tracking_store,  # noqa: F401
)
from typer.testing import CliRunner

from nncli.cli.app import app
from nncli.loggers.tensorboard import tag
from nncli.runs.record import flatten

pytestmark = QUIET
LOGGED = TINY + "loggers: [tensorboard, mlflow]\n"


def rows(folder: Path) -> list[dict[str, float]]:
    with (folder / "metrics.csv").open() as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def train(runner: CliRunner, spec: Path, runs_dir: Path) -> Path:
    result = runner.invoke(app, ["train", str(spec), "--runs-dir", str(runs_dir), "-q"])
    assert result.exit_code == 0, result.output
    return Path(result.stdout.strip())


def test_a_run_logs_every_epoch_to_tensorboard_and_mlflow(
    runner: CliRunner, write: Callable[..., Path], tmp_path: Path, tracking: str
) -> None:
    folder = train(runner, write(LOGGED), tmp_path / "runs")
    table = rows(folder)
    assert [r["epoch"] for r in table] == [1, 2, 3]
    columns = [c for c in table[0] if c != "epoch"]
    assert "val_accuracy" in columns and "lr" in columns

    # TensorBoard: each column a scalar, at each epoch's step (float32 in the events)
    found = scalars(folder)
    assert sorted(found) == sorted(tag(c) for c in columns)
    assert "accuracy/val" in found
    for column in columns:
        assert [s for s, _ in found[tag(column)]] == [1, 2, 3]
        assert [v for _, v in found[tag(column)]] == pytest.approx(
            [r[column] for r in table], rel=1e-6
        )
    figures = sorted(p.stem for p in (folder / "plots").glob("*.png"))
    assert images(folder) == [f"plots/{name}" for name in figures]
    assert "loss" in figures

    # MLflow: the flattened config as params, every column's history, artifacts, status
    run_id = links(folder)["mlflow"]["run_id"]
    assert links(folder)["mlflow"]["tracking_uri"] == tracking
    run = mlflow_run(tracking, run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == folder.name
    config = flatten(yaml.safe_load((folder / "config.yaml").read_text()))
    assert set(run.data.params) == set(config)
    assert run.data.params["optimizer.lr"] == "0.05"
    assert run.data.params["model.layers.0.units"] == "8"
    assert run.data.params["data.source"] == "circles"
    for column in columns:
        assert history(tracking, run_id, column) == [
            (int(r["epoch"]), pytest.approx(r[column], rel=1e-12)) for r in table
        ]
    assert artifacts(tracking, run_id) == ["config.yaml", "plots"]
    assert artifacts(tracking, run_id, "plots") == [f"plots/{name}.png" for name in figures]
    assert run.data.tags["nncli.run_folder"] == str(folder.resolve())
    assert run.data.tags["nncli.checkpoint.best"] == str(folder.resolve() / "checkpoints/best.pt")
    assert run.data.tags["nncli.status"] == "completed"


def test_an_interrupted_run_ends_killed_and_resume_continues_the_same_runs(
    runner: CliRunner,
    write: Callable[..., Path],
    tmp_path: Path,
    tracking: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from torch.utils.tensorboard import SummaryWriter

    folder = interrupted_run(runner, write(LOGGED), tmp_path / "runs", monkeypatch, at=1)
    run_id = links(folder)["mlflow"]["run_id"]
    assert mlflow_run(tracking, run_id).info.status == "KILLED"
    assert "warning" not in (folder / "log.txt").read_text()  # no logger was dropped
    # Ctrl-C came as the run folder wrote epoch 1: the trackers did not see it
    assert history(tracking, run_id, "train_loss") == []
    # as if a killed process had logged epoch 2 after last.pt was saved for epoch 1
    stray = SummaryWriter(str(folder))
    stray.add_scalar("loss/train", 99.0, 2)
    stray.close()

    result = runner.invoke(app, ["resume", str(folder), "-q"])
    assert result.exit_code == 0, result.output
    assert links(folder)["mlflow"]["run_id"] == run_id  # the same MLflow run
    run = mlflow_run(tracking, run_id)
    assert run.info.status == "FINISHED"
    table = rows(folder)
    assert history(tracking, run_id, "train_loss") == [
        (int(r["epoch"]), pytest.approx(r["train_loss"])) for r in table
    ]
    from mlflow import MlflowClient

    same = MlflowClient(tracking).search_runs(
        [run.info.experiment_id], f"tags.`nncli.run_folder` = '{folder.resolve()}'"
    )
    assert [r.info.run_id for r in same] == [run_id]  # no second run
    # TensorBoard: the same log dir, steps 1 to 3 once each, the stray epoch 2 purged
    assert links(folder)["tensorboard"]["log_dir"] == str(folder.resolve())
    assert scalars(folder)["loss/train"] == [
        (int(r["epoch"]), pytest.approx(r["train_loss"], rel=1e-6)) for r in table
    ]
    assert info(folder)["status"] == "completed"
    assert "warning" not in (folder / "log.txt").read_text()


def test_a_failed_run_ends_failed(
    runner: CliRunner,
    write: Callable[..., Path],
    tmp_path: Path,
    tracking: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import nncli.engine.experiment

    def broken(*args: object) -> list[Path]:
        raise RuntimeError("the figures broke")

    monkeypatch.setattr(nncli.engine.experiment, "write_plots", broken)
    result = runner.invoke(app, ["train", str(write(LOGGED)), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 1
    assert "warning" not in result.stderr
    (folder,) = (tmp_path / "runs").iterdir()
    assert info(folder)["status"] == "failed"
    run = mlflow_run(tracking, links(folder)["mlflow"]["run_id"])
    assert run.info.status == "FAILED"
    assert run.data.tags["nncli.error"] == "RuntimeError: the figures broke"
    assert [s for s, _ in scalars(folder)["loss/train"]] == [1, 2, 3]


def test_a_tracker_that_is_down_warns_once_and_the_run_completes(
    runner: CliRunner, write: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "1")
    spec = write(TINY + f"loggers:\n  - mlflow: {{tracking_uri: 'http://127.0.0.1:{port}'}}\n")
    result = runner.invoke(app, ["train", str(spec), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning")]
    assert len(warnings) == 1, result.stderr
    assert warnings[0].startswith(
        "warning logger MlflowLogger failed and is switched off for this run: API request "
        f"to http://127.0.0.1:{port}/"
    )
    (folder,) = (tmp_path / "runs").iterdir()
    assert info(folder)["status"] == "completed"
    assert len(rows(folder)) == 3


def test_a_tracker_that_fails_mid_run_is_dropped_with_one_warning(
    runner: CliRunner, write: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    calls = []
    original = MlflowClient.log_batch

    def flaky(self: MlflowClient, run_id: str, metrics: object = (), **kw: object) -> object:
        if metrics:
            calls.append(run_id)
            if len(calls) == 2:  # the server goes down during epoch 2
                raise ConnectionError("the tracking server went away")
        return original(self, run_id, metrics=metrics, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(MlflowClient, "log_batch", flaky)
    result = runner.invoke(app, ["train", str(write(LOGGED)), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning")]
    assert warnings == [
        "warning logger MlflowLogger failed and is switched off for this run: the tracking "
        "server went away"
    ]
    assert len(calls) == 2  # not called again after it failed
    (folder,) = (tmp_path / "runs").iterdir()
    assert info(folder)["status"] == "completed"
    assert [s for s, _ in scalars(folder)["loss/train"]] == [1, 2, 3]  # tensorboard went on


def test_ctrl_c_during_a_slow_tracker_call_stops_the_run_not_the_tracker(
    runner: CliRunner,
    write: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    tracking: str,
) -> None:
    from mlflow import MlflowClient

    calls = []
    original = MlflowClient.log_batch

    def slow(self: MlflowClient, run_id: str, metrics: object = (), **kw: object) -> object:
        if metrics:
            calls.append(run_id)
            if len(calls) == 2:  # the user presses Ctrl-C while epoch 2 is being sent
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(5)  # a request that takes its time
        return original(self, run_id, metrics=metrics, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(MlflowClient, "log_batch", slow)
    started = time.monotonic()
    result = runner.invoke(app, ["train", str(write(LOGGED)), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 130, result.output
    assert time.monotonic() - started < 5
    assert "warning" not in result.stderr  # the tracker was not blamed, nor switched off
    (folder,) = (tmp_path / "runs").iterdir()
    assert info(folder)["status"] == "interrupted"
    assert len(rows(folder)) == 2  # the row of the epoch it stopped in is kept
    assert mlflow_run(tracking, links(folder)["mlflow"]["run_id"]).info.status == "KILLED"


def test_ctrl_c_while_a_tracker_is_told_the_run_completed_leaves_it_completed(
    runner: CliRunner,
    write: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    tracking: str,
) -> None:
    # run.json says completed before the trackers are told: a Ctrl-C while MLflow is sent
    # the end (a request that takes its time) marked the completed run interrupted
    from mlflow import MlflowClient

    original = MlflowClient.set_terminated

    def slow(self: MlflowClient, run_id: str, status: str | None = None, **kw: object) -> None:
        if status == "FINISHED":
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        original(self, run_id, status, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(MlflowClient, "set_terminated", slow)
    runs = tmp_path / "runs"
    result = runner.invoke(app, ["train", str(write(LOGGED)), "--runs-dir", str(runs), "-q"])
    assert result.exit_code == 0, result.output
    (folder,) = runs.iterdir()
    assert result.stdout == f"{folder}\n"
    assert result.stderr == (
        "warning logger MlflowLogger failed and is switched off for this run: interrupted\n"
    )
    assert info(folder)["status"] == "completed"
    assert (folder / "report.html").is_file()  # written after the trackers, as ever


@pytest.mark.parametrize("logger", ["tensorboard", "mlflow"])
def test_a_missing_library_is_refused_before_any_run_folder(
    runner: CliRunner,
    write: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    logger: str,
) -> None:
    import nncli.loggers.extras

    real = nncli.loggers.extras.find_spec
    monkeypatch.setattr(
        nncli.loggers.extras, "find_spec", lambda name: None if name == logger else real(name)
    )
    spec = write(TINY + f"loggers:\n  - {logger}\n")
    stderr = train_refused(runner, spec, tmp_path)
    assert stderr == (
        f"error {spec}:19:5  loggers.0  this logger needs {logger}, which is not "
        f"installed (pip install 'nncli[{logger}]')\n"
    )


@pytest.mark.slow
def test_under_torchrun_only_the_process_that_writes_the_run_folder_logs(
    write: Callable[..., Path], tmp_path: Path, tracking: str
) -> None:
    import subprocess
    import sys

    from mlflow import MlflowClient

    spec = write(LOGGED.replace("epochs: 3", "epochs: 2"))
    command = ["train", str(spec), "--runs-dir", "runs", "-q", "--nproc-per-node", "2"]
    two = subprocess.run(
        [sys.executable, "-m", "nncli", *command],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert two.returncode == 0, two.stdout + two.stderr
    (folder,) = (tmp_path / "runs").iterdir()
    assert len(list(folder.glob("events.out.tfevents.*"))) == 1
    assert [s for s, _ in scalars(folder)["loss/train"]] == [1, 2]
    client = MlflowClient(tracking)
    ids = [e.experiment_id for e in client.search_experiments()]
    found = client.search_runs(ids, f"tags.`nncli.run_folder` = '{folder.resolve()}'")
    assert [r.info.run_id for r in found] == [links(folder)["mlflow"]["run_id"]]
    assert [s for s, _ in history(tracking, found[0].info.run_id, "train_loss")] == [1, 2]
