"""Nothing lost, nothing half-done: real processes killed (SIGKILL) after the best epoch,
half-way through a checkpoint, during the final figures, or interrupted (SIGINT) before
the first epoch, then resumed; the result equals the run nobody interrupted."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import interrupted_run
from typer.testing import CliRunner

from nncli.cli.app import app
from nncli.errors import RunInterrupted

# moons with early stopping: the best val_loss is epoch 3, the run stops after epoch 6 and
# ends with epoch 3's weights (restore_best); an epoch takes milliseconds
EARLY = """\
name: early
seed: 7
data: {source: moons, n_samples: 200, noise: 0.05, split: {val: 0.2, test: 0.2}}
model:
  layers: [dense: 8, tanh, dense: 1, sigmoid]
loss: bce
optimizer: {name: adam, lr: 0.05}
train:
  epochs: 40
  batch_size: 32
  device: cpu
  monitor: val_loss
  early_stopping: {patience: 3, restore_best: true}
metrics: [accuracy]
"""
BEST, STOP = 3, 6

# `python PAUSE MARKER WHERE nncli-args...`: runs nncli, and at WHERE writes MARKER and
# waits to be killed. WHERE is epoch:N (after epoch N's row and checkpoints are written),
# save:N:NAME (half-way through writing epoch N's NAME: half of its temporary file is on
# disk), plots (the curves are drawn, the other figures not yet), prepare (before the data
# is read) or folder (the run folder is made, training has not started)
PAUSE = """\
import os, sys, time
from pathlib import Path

marker, where, args = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
kind, _, at = where.partition(":")


def pause():
    marker.write_text(where)
    while True:
        time.sleep(0.05)


if kind == "epoch":
    from nncli.loggers.run_folder import RunFolderLogger

    logged = RunFolderLogger.epoch

    def epoch(self, row, *rest, **kw):
        logged(self, row, *rest, **kw)
        if row["epoch"] == int(at):
            pause()

    RunFolderLogger.epoch = epoch
elif kind == "save":
    import io

    import torch

    import nncli.loggers.run_folder as run_folder

    number, name = at.split(":")
    saved = run_folder.write_bytes_atomic

    def save(path, data, *rest, **kw):  # (on the thread that writes checkpoints)
        epoch = torch.load(io.BytesIO(data), weights_only=True)["epoch"]
        if epoch == int(number) and Path(path).name == name:
            tmp = Path(path).with_name(f".{Path(path).name}.{os.getpid()}.tmp")
            tmp.write_bytes(data[: len(data) // 2])
            pause()
        saved(path, data, *rest, **kw)

    run_folder.write_bytes_atomic = save
elif kind == "plots":
    import nncli.engine.run_figures as run_figures

    run_figures.plot_confusion_matrix = lambda *a, **kw: pause()
elif kind == "prepare":
    import nncli.engine.experiment as experiment

    experiment.prepare = lambda *a, **kw: pause()
elif kind == "folder":
    import nncli.engine.experiment as experiment

    experiment.locked = lambda *a, **kw: pause()
sys.argv = ["nncli", *args]
from nncli.cli.app import main

main()
"""


def nncli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nncli", *args], capture_output=True, text=True, check=False
    )


def paused(tmp_path: Path, where: str, *args: str) -> subprocess.Popen[str]:
    """nncli with `args`, started and waiting at `where` (see PAUSE)."""
    script, marker = tmp_path / "pause.py", tmp_path / "paused"
    script.write_text(PAUSE, encoding="utf-8")
    marker.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(marker), where, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not marker.is_file():
        if proc.poll() is not None:
            raise AssertionError(f"nncli ended before {where}: {proc.communicate()}")
        assert time.monotonic() < deadline, f"nncli did not reach {where}"
        time.sleep(0.02)
    return proc


def rows_without_time(folder: Path) -> list[dict[str, str]]:
    with (folder / "metrics.csv").open() as f:
        return [{k: v for k, v in r.items() if k != "time_s"} for r in csv.DictReader(f)]


def info(folder: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((folder / "run.json").read_text())
    return data


def checkpoint(folder: Path, name: str) -> dict[str, Any]:
    state: dict[str, Any] = torch.load(folder / "checkpoints" / name, weights_only=True)
    return state


def differences(a: object, b: object, where: str = "") -> list[str]:
    """Where two checkpoints differ: nested dicts, lists, tensors (bit for bit) and values."""
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        equal = a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
        return [] if equal else [where]
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        if a.keys() != b.keys():
            return [f"{where} keys {sorted(a)} != {sorted(b)}"]
        return [d for k in a for d in differences(a[k], b[k], f"{where}.{k}")]
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        if len(a) != len(b):
            return [f"{where} length"]
        pairs = enumerate(zip(a, b, strict=True))
        return [d for i, (x, y) in pairs for d in differences(x, y, f"{where}[{i}]")]
    return [] if a == b else [f"{where}: {a!r} != {b!r}"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("whole")
    spec = tmp / "early.yaml"
    spec.write_text(EARLY, encoding="utf-8")
    done = nncli("train", str(spec), "--runs-dir", str(tmp / "runs"), "-q")
    assert done.returncode == 0, done.stderr
    folder = Path(done.stdout.strip())
    assert info(folder)["best_checkpoint"]["epoch"] == BEST
    assert info(folder)["stopped_early"] is True
    assert len(rows_without_time(folder)) == STOP
    return folder


@pytest.mark.slow
@pytest.mark.parametrize(
    "where",
    [
        f"epoch:{BEST + 1}",  # after the best epoch: its weights must come back at the stop
        f"epoch:{STOP}",  # stopped, before the figures: nothing left to train
        "plots",
        f"save:{BEST}:best.pt",  # the best epoch's best.pt half-written
        f"save:{BEST}:last.pt",
        f"save:{STOP}:last.pt",
    ],
)
def test_a_killed_early_stopping_run_resumes_to_the_uninterrupted_result(
    uninterrupted: Path, tmp_path: Path, where: str
) -> None:
    spec = tmp_path / "early.yaml"
    spec.write_text(EARLY, encoding="utf-8")
    proc = paused(tmp_path, where, "train", str(spec), "--runs-dir", str(tmp_path / "runs"), "-q")
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    (folder,) = (tmp_path / "runs").iterdir()
    assert info(folder)["status"] == "running"  # nobody could record the kill

    resumed = nncli("resume", str(folder), "-q")
    assert resumed.returncode == 0, resumed.stderr
    assert rows_without_time(folder) == rows_without_time(uninterrupted)
    for name in ("last.pt", "best.pt"):
        assert differences(checkpoint(folder, name), checkpoint(uninterrupted, name)) == [], name
    assert not list((folder / "checkpoints").glob(".*.tmp"))
    done, whole = info(folder), info(uninterrupted)
    for key in ("status", "epochs_done", "best_checkpoint", "stopped_early", "best", "final"):
        if key == "final":  # its time_s is the resumed process's
            done[key].pop("time_s"), whole[key].pop("time_s")
        assert done[key] == whole[key], key
    assert sorted(p.name for p in (folder / "plots").iterdir()) == sorted(
        p.name for p in (uninterrupted / "plots").iterdir()
    )


def test_a_resumed_runs_figures_show_every_epoch(
    runner: CliRunner, write: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = write(EARLY.replace("epochs: 40", "epochs: 4"), "early.yaml")
    folder = interrupted_run(runner, spec, tmp_path / "runs", monkeypatch, at=2)
    from nncli.engine import run_figures

    drawn: list[list[float]] = []
    curves = run_figures.plot_curves

    def spy(rows: list[Mapping[str, float]], *args: Any) -> list[Path]:
        drawn.append([row["train_loss"] for row in rows])
        return curves(rows, *args)

    monkeypatch.setattr(run_figures, "plot_curves", spy)
    result = runner.invoke(app, ["resume", str(folder), "-q"])
    assert result.exit_code == 0, result.output
    assert drawn == [[float(r["train_loss"]) for r in rows_without_time(folder)]]
    assert len(drawn[0]) == 4


@pytest.mark.slow
def test_sigint_while_preparing_says_no_run_folder_was_made(tmp_path: Path) -> None:
    spec = tmp_path / "early.yaml"
    spec.write_text(EARLY, encoding="utf-8")
    proc = paused(tmp_path, "prepare", "train", str(spec), "--runs-dir", str(tmp_path / "runs"))
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert stderr.strip() == "interrupted before a run folder was made; nothing was written"
    assert stdout == ""
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"]
)
def test_an_interrupt_before_the_first_epoch_marks_the_run_and_names_it(
    uninterrupted: Path, tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    spec = tmp_path / "early.yaml"
    spec.write_text(EARLY, encoding="utf-8")
    proc = paused(tmp_path, "folder", "train", str(spec), "--runs-dir", str(tmp_path / "runs"))
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    (folder,) = (tmp_path / "runs").iterdir()
    assert proc.returncode == code, stderr
    assert stderr.strip() == (
        f"interrupted: the run is marked interrupted; finished epochs are kept in {folder} "
        f"(continue it with: nncli resume {folder})"
    )
    assert stdout.strip().splitlines()[-1] == str(folder)
    assert info(folder)["status"] == "interrupted"
    assert info(folder)["epochs_done"] == 0

    resumed = nncli("resume", str(folder), "-q")
    assert resumed.returncode == 0, resumed.stderr
    assert rows_without_time(folder) == rows_without_time(uninterrupted)
    assert differences(checkpoint(folder, "last.pt"), checkpoint(uninterrupted, "last.pt")) == []


def test_a_stop_that_lands_in_a_librarys_except_exception_still_stops_training() -> None:
    # torch imports an optional module in the first optimizer step inside `except
    # Exception`: a sweep's SIGTERM that landed there was swallowed, and the trial trained on
    from nncli.engine.signals import training_signals

    with training_signals(), pytest.raises(RunInterrupted) as stopped:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        except Exception:
            pass
    assert stopped.value.exit_code == 143


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # as Python does
def test_a_ctrl_c_that_a_finalizer_swallowed_still_stops_the_run_at_the_next_batch(
    runner: CliRunner, write: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Python prints what a __del__ raises and goes on: a Ctrl-C that lands in one (a
    # DataLoader iterator's, ending its workers) was lost, and the run trained to its end
    from nncli.engine import fit

    steps = []
    original = fit.step

    class Finalized:
        def __del__(self) -> None:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)  # the handler raises here, and Python ignores it

    def step(*args: Any) -> None:
        original(*args)
        steps.append(1)
        if len(steps) == 3:
            Finalized()  # freed at once

    monkeypatch.setattr(fit, "step", step)
    spec = write(EARLY.replace("epochs: 40", "epochs: 4"), "early.yaml")
    result = runner.invoke(app, ["train", str(spec), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 130, result.output
    assert len(steps) == 3  # the next batch did not train
    (folder,) = (tmp_path / "runs").iterdir()
    assert info(folder)["status"] == "interrupted"
    assert info(folder)["epochs_done"] == 0


def test_an_interrupt_before_a_resume_trains_leaves_the_run_as_it_was(
    runner: CliRunner, write: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = write(EARLY.replace("epochs: 40", "epochs: 4"), "early.yaml")
    folder = interrupted_run(runner, spec, tmp_path / "runs", monkeypatch, at=2)
    before = (folder / "run.json").read_bytes()
    from nncli.engine import experiment

    def interrupted(*args: object) -> None:
        raise RunInterrupted(143)  # SIGTERM while the data is read again

    monkeypatch.setattr(experiment, "prepare", interrupted)
    result = runner.invoke(app, ["resume", str(folder)])
    assert result.exit_code == 143, result.output
    assert result.stderr.strip() == (
        f"interrupted before training resumed (continue it with: nncli resume {folder})"
    )
    assert (folder / "run.json").read_bytes() == before
