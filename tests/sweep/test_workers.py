"""Sweeps across machines: workers that --join a sweep and claim its trials, a dead
worker's trial taken over, Optuna's stored study with pruning, and the Slurm launcher
through submitit's local executor. Real processes throughout."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_sweep import BASE, run_folders, statuses, sweep_json
from typer.testing import CliRunner

from nncli.cli.app import app
from nncli.sweep.claims import Claims
from nncli.sweep.execute import Event, _take
from nncli.sweep.state import reopen

NNCLI = [sys.executable, "-m", "nncli"]


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*NNCLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_for(check: Any, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def holders(out: Path) -> dict[int, int]:
    """trial number -> pid of the worker that claimed it last."""
    return {
        int(p.name.split("-")[1]): json.loads(p.read_text())["pid"]
        for p in (out / "claims").iterdir()
    }


def test_two_joined_workers_and_the_starter_run_each_of_12_trials_once(tmp_path: Path) -> None:
    exp = tmp_path / "exp.yaml"
    exp.write_text(BASE)
    out = tmp_path / "sweep"
    grid = ["--grid", "optimizer.lr=0.1,0.03,0.01", "--grid", "model.layers.0.dense=2,4,8,16"]
    starter = start("sweep", str(exp), *grid, "--out", str(out), "-f", "csv")
    wait_for((out / "sweep.json").is_file, "the sweep to be created")
    joined = [start("sweep", "--join", str(out), "-f", "csv") for _ in range(2)]
    for proc in [starter, *joined]:
        _, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr

    trials = sweep_json(out)["trials"]
    assert [t["status"] for t in trials] == ["completed"] * 12
    assert [t["attempts"] for t in trials] == [1] * 12  # each trial run exactly once
    assert len(run_folders(out)) == 12
    assert len({t["run"] for t in trials}) == 12
    workers = {starter.pid, *(p.pid for p in joined)}
    taken_by = holders(out)
    assert set(taken_by) == set(range(1, 13)) and set(taken_by.values()) <= workers
    assert len(set(taken_by.values())) >= 2  # the work was shared
    assert sweep_json(out)["status"] == "completed"
    assert (out / "best.yaml").is_file()


def test_a_killed_worker_leaves_its_trials_to_another(tmp_path: Path) -> None:
    exp = tmp_path / "exp.yaml"
    exp.write_text(BASE)
    out = tmp_path / "sweep"
    # trials 1 and 2 train long enough to be killed in the middle, two at once
    args = ["--grid", "train.epochs=150,100,2", "--jobs", "2", "--out", str(out)]
    first = start("sweep", str(exp), *args)

    def mid_run() -> bool:
        runs = list((out / "runs").glob("*/metrics.csv")) if (out / "runs").is_dir() else []
        return len(runs) == 2 and all(len(m.read_text().splitlines()) > 4 for m in runs)

    wait_for(mid_run, "two trials in the middle of their epochs")
    one = sweep_json(out)["trials"][0]
    before = {f"runs/{p.name}" for p in run_folders(out)}
    # the machine of trial 1 dies: the worker and its trial; trial 2's process lives on
    os.kill(first.pid, signal.SIGKILL)
    os.kill(one["pid"], signal.SIGKILL)
    first.communicate()
    assert statuses(out) == ["running", "running", "pending"]

    second = start("sweep", "--join", str(out), "-f", "csv")
    _, stderr = second.communicate(timeout=600)
    assert second.returncode == 0, stderr
    trials = sweep_json(out)["trials"]
    assert [t["status"] for t in trials] == ["completed"] * 3
    assert len(run_folders(out)) == 3
    assert {trials[0]["run"], trials[1]["run"]} == before  # the folders they had
    # trial 1: resumed in its own run folder, from its last checkpoint
    assert trials[0]["attempts"] == 2
    info = json.loads((out / trials[0]["run"] / "run.json").read_text())
    assert info["epochs_done"] == 150 and info["resumed"][0]["after_epoch"] >= 4
    assert f"trial 1/3  resuming {trials[0]['run']}" in stderr
    # trial 2: its process finished it while no worker watched; it was not run again
    assert trials[1]["attempts"] == 1
    assert "resumed" not in json.loads((out / trials[1]["run"] / "run.json").read_text())
    assert "trial 2: its run ended completed while unwatched" in stderr
    assert "trial 2/3  resuming" not in stderr and "trial 2/3  started" not in stderr


def test_a_claimed_trial_is_not_taken_and_a_released_one_is_settled(
    tmp_path: Path, runner: CliRunner
) -> None:
    exp = tmp_path / "exp.yaml"
    exp.write_text(BASE)
    out = tmp_path / "sweep"
    result = runner.invoke(app, ["sweep", str(exp), "--grid", "seed=1,2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = sweep_json(out)
    made = data["trials"][1]["run"]
    # as a worker killed before it recorded the end, while the trial ran on
    data["trials"][1].update(status="running", run=None)
    (out / "sweep.json").write_text(json.dumps(data))
    sweep = reopen(out, None, retry=False)
    other = Claims(out)  # another worker's claim: a separate open file, as the kernel sees it
    assert other.take(2)
    events: list[Event] = []
    assert _take(sweep, Claims(out), None, events.append) is None
    assert sweep.trials[1].status == "running" and events == []
    other.release(2)  # that worker and its trial are gone
    assert _take(sweep, Claims(out), None, events.append) is None  # nothing left to run
    assert sweep_json(out)["trials"][1]["status"] == "completed"
    assert sweep_json(out)["trials"][1]["run"] == made
    assert [e.text for e in events] == ["trial 2: its run ended completed while unwatched"]


PRUNED = (
    BASE.replace("epochs: 2", "epochs: 4")
    + """\
sweep:
  method: bayes
  n_trials: 8
  seed: 3
  range:
    optimizer.lr: [1.0e-5, 0.3, log]
  prune: {type: median, startup_trials: 2}
"""
)


@pytest.mark.slow
def test_bayes_with_median_pruning_prunes_and_the_study_keeps_them(
    tmp_path: Path, runner: CliRunner
) -> None:
    optuna = pytest.importorskip("optuna")
    exp = tmp_path / "exp.yaml"
    exp.write_text(PRUNED)
    out = tmp_path / "sweep"
    result = runner.invoke(app, ["sweep", str(exp), "--out", str(out), "-f", "csv"])
    assert result.exit_code == 0, result.output
    trials = sweep_json(out)["trials"]
    pruned = [t for t in trials if t["status"] == "pruned"]
    assert pruned, [t["status"] for t in trials]
    assert {t["status"] for t in trials} == {"completed", "pruned"}
    for t in pruned:
        info = json.loads((out / t["run"] / "run.json").read_text())
        assert info["status"] == "pruned" and info["epochs_done"] < 4
        assert t["value"] == info["best"]["val_loss"]["value"]  # ranked by what it reached
        config = yaml.safe_load((out / t["run"] / "config.yaml").read_text())
        assert config["loggers"] == [{"type": "sweep_prune"}]
    assert f"pruned  optimizer.lr={pruned[0]['params']['optimizer.lr']}" in result.stderr
    assert sweep_json(out)["best"]["trial"] not in [t["number"] for t in pruned]
    listed = runner.invoke(app, ["runs", str(out / "runs"), "--status", "pruned", "-f", "csv"])
    assert listed.exit_code == 0, listed.output
    assert len(listed.stdout.strip().splitlines()) == 1 + len(pruned)

    def states() -> dict[int, str]:
        storage = optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(out / "optuna.journal"))
        )
        study = optuna.load_study(study_name=out.name, storage=storage)
        return {t.number: t.state.name for t in study.trials}

    expected = {t["optuna"]: "PRUNED" if t["status"] == "pruned" else "COMPLETE" for t in trials}
    assert states() == expected
    resumed = runner.invoke(app, ["sweep", "--resume", str(out), "-f", "csv"])
    assert resumed.exit_code == 0, resumed.output
    assert "8 trials (bayes), 0 to run" in resumed.stderr
    assert states() == expected  # the stored study keeps its pruned trials
    assert statuses(out) == [t["status"] for t in trials]


@pytest.mark.slow
def test_a_database_given_as_storage_keeps_the_study(tmp_path: Path, runner: CliRunner) -> None:
    """--storage URL: Optuna's RDB storage (SQLite here; PostgreSQL is the same code path
    with its driver), read back by Optuna itself, and found again by --resume."""
    optuna = pytest.importorskip("optuna")
    exp = tmp_path / "exp.yaml"
    exp.write_text(BASE)
    out, url = tmp_path / "sweep", f"sqlite:///{tmp_path / 'study.db'}"
    space = ["--method", "bayes", "--range", "optimizer.lr=1e-3:0.3:log", "--trials", "3"]
    result = runner.invoke(
        app, ["sweep", str(exp), *space, "--storage", url, "--out", str(out), "-f", "csv"]
    )
    assert result.exit_code == 0, result.output
    assert not (out / "optuna.journal").exists()
    recorded = sweep_json(out)
    assert recorded["storage"] == url
    study = optuna.load_study(study_name=out.name, storage=url)
    stored = {t.number: (t.state.name, t.value) for t in study.trials}
    assert stored == {t["optuna"]: ("COMPLETE", t["value"]) for t in recorded["trials"]}
    resumed = runner.invoke(app, ["sweep", "--resume", str(out), "-f", "csv"])
    assert resumed.exit_code == 0, resumed.output
    assert "3 trials (bayes), 0 to run" in resumed.stderr


def test_a_storage_that_cannot_be_opened_is_refused_before_the_sweep_folder(
    tmp_path: Path, runner: CliRunner
) -> None:
    pytest.importorskip("optuna")
    exp = tmp_path / "exp.yaml"
    exp.write_text(BASE)
    space = ["--method", "bayes", "--range", "optimizer.lr=1e-3:0.3:log", "--trials", "2"]
    for url, shown in [
        ("bogus://x", "bogus://x"),
        ("postgresql://me:secret@127.0.0.1:1/db", "postgresql://me:***@127.0.0.1:1/db"),
        (f"sqlite:///{tmp_path}/absent/study.db", f"sqlite:///{tmp_path}/absent/study.db"),
    ]:
        out = tmp_path / "sweep"
        result = runner.invoke(
            app, ["sweep", str(exp), *space, "--storage", url, "--out", str(out)]
        )
        assert result.exit_code == 2, result.output
        text = " ".join(result.stderr.split())
        assert text.startswith(
            f"error --storage {shown} cannot be opened as Optuna's database: "
        ), text
        assert "Check the URL (dialect://user:password@host:port/database)" in text
        assert "secret" not in result.output and "Traceback" not in result.output
        assert not out.exists()


def test_the_slurm_launcher_runs_the_workers_through_submitit(
    tmp_path: Path, runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("submitit")
    exp = tmp_path / "exp.yaml"
    exp.write_text(BASE + "sweep:\n  grid: {seed: [1, 2, 3]}\n  slurm: {workers: 2, time: 10}\n")
    out = tmp_path / "sweep"
    monkeypatch.setenv("NNCLI_SUBMITIT_CLUSTER", "local")  # no Slurm cluster here
    args = ["sweep", str(exp), "--launcher", "slurm", "--out", str(out), "-f", "csv"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "submitted 2 workers: jobs " in result.stderr
    assert statuses(out) == ["completed"] * 3
    assert len(run_folders(out)) == 3
    assert len(list((out / "slurm").glob("*/*_log.err"))) == 2  # each job's own log
    assert sweep_json(out)["slurm"]["workers"] == 2


def test_sweep_settings_for_many_machines_are_checked(tmp_path: Path, runner: CliRunner) -> None:
    exp = tmp_path / "exp.yaml"
    exp.write_text(BASE + "sweep:\n  grid: {seed: [1, 2]}\n  prune: median\n")
    result = runner.invoke(app, ["sweep", str(exp), "--dry-run"])
    assert result.exit_code == 2
    assert (
        f"{exp}:20:3 sweep.prune: pruning compares trials in Optuna's study, which bayes "
        "search keeps; use method: bayes, or remove prune"
    ) in " ".join(result.stderr.split())
    exp.write_text(BASE + "sweep:\n  grid: {seed: [1, 2]}\n  slurm: {workers: 0, gpu: 1}\n")
    result = runner.invoke(app, ["sweep", str(exp), "--dry-run"])
    assert result.exit_code == 2
    text = " ".join(result.stderr.split())
    assert "sweep.slurm.workers" in text and "sweep.slurm.gpu" in text
    refused = runner.invoke(app, ["sweep", "--join", str(tmp_path), "--grid", "seed=1,2"])
    assert refused.exit_code == 2
    assert "--join continues a sweep as it was planned; give no --grid" in refused.stderr


@pytest.mark.slow
def test_each_trial_can_be_a_torchrun_job(tmp_path: Path, runner: CliRunner) -> None:
    exp = tmp_path / "exp.yaml"
    exp.write_text(BASE)
    out = tmp_path / "sweep"
    args = ["sweep", str(exp), "--grid", "seed=1,2", "--nproc-per-node", "2", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    trials = sweep_json(out)["trials"]
    # torchrun's run folder is found as a single process's is
    assert [(t["status"], t["attempts"]) for t in trials] == [("completed", 1)] * 2
    assert {f"runs/{p.name}" for p in run_folders(out)} == {t["run"] for t in trials}
    log = (out / "logs" / "trial-001.log").read_text()
    assert "--runs-dir" in log and "--nproc-per-node 2 -q" in log.splitlines()[0]
