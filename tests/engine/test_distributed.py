"""Two gloo processes on the CPU train one spec under torch.distributed (as CI can)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import EXPERIMENTS

PLAIN = """\
name: ddp
seed: 3
data: {source: moons, n_samples: 600, noise: 0.2, split: {val: 0.2, test: 0.2}}
model:
  layers: [dense: 16, relu, dense: 1, sigmoid]
loss: bce
optimizer: {name: adam, lr: 0.01}
train: {epochs: 3, batch_size: 32, device: cpu}
metrics: [accuracy]
"""


def nncli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nncli", *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


def losses(folder: Path) -> list[dict[str, float]]:
    with (folder / "metrics.csv").open() as f:
        return [{k: float(v) for k, v in r.items() if k != "time_s"} for r in csv.DictReader(f)]


@pytest.mark.slow
def test_two_processes_match_one(write: Callable[..., Path], tmp_path: Path) -> None:
    spec = write(PLAIN, "ddp.yaml")
    one = nncli("train", str(spec), "--runs-dir", str(tmp_path / "one"), "-q")
    assert one.returncode == 0, one.stderr
    two = nncli("train", str(spec), "--runs-dir", str(tmp_path / "two"), "--nproc-per-node", "2")
    assert two.returncode == 0, two.stdout + two.stderr
    assert "2 processes: global batch 32 = 2 x 16 per process" in two.stdout
    (folder,) = (tmp_path / "two").iterdir()  # exactly one run folder, from rank 0
    assert two.stdout.strip().splitlines()[-1] == str(folder)
    mine, single = losses(folder), losses(Path(one.stdout.strip()))
    assert [r["epoch"] for r in mine] == [1, 2, 3]
    for a, b in zip(mine, single, strict=True):
        for key in ("train_loss", "val_loss", "test_loss", "val_accuracy"):
            assert a[key] == pytest.approx(b[key], rel=1e-3, abs=1e-4), key
    assert json.loads((folder / "run.json").read_text())["status"] == "completed"
    assert (folder / "checkpoints" / "last.pt").is_file()


@pytest.mark.slow
def test_a_failing_rank_stops_the_job_and_fails_the_run(
    write: Callable[..., Path], tmp_path: Path
) -> None:
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    # every process of the job imports this at start-up: rank 1 breaks in its first epoch
    (hooks / "sitecustomize.py").write_text(
        "import os\n"
        "if os.environ.get('RANK') == '1':\n"
        "    import nncli.engine.fit\n"
        "    def broken(*args, **kwargs):\n"
        "        raise RuntimeError('rank 1 exploded')\n"
        "    nncli.engine.fit.fit = broken\n"
        "    import nncli.engine.experiment\n"
        "    nncli.engine.experiment.fit = broken\n"
    )
    spec = write(PLAIN, "ddp.yaml")
    result = nncli(
        "train",
        str(spec),
        "--runs-dir",
        str(tmp_path / "runs"),
        "--nproc-per-node",
        "2",
        env={"PYTHONPATH": str(hooks)},
    )
    assert result.returncode != 0
    assert "RuntimeError: rank 1 exploded" in result.stderr
    (folder,) = (tmp_path / "runs").iterdir()
    info = json.loads((folder / "run.json").read_text())
    assert info["status"] == "failed"
    # rank 0 sees its peer vanish (gloo: connection closed or reset by peer), or the
    # launcher marks the run when it stops rank 0
    assert "by peer" in info["error"] or "a process of the job failed" in info["error"]


@pytest.mark.slow
def test_a_global_batch_that_does_not_split_is_refused(
    write: Callable[..., Path], tmp_path: Path
) -> None:
    spec = write(PLAIN.replace("batch_size: 32", "batch_size: 33"), "ddp.yaml")
    result = nncli(
        "train", str(spec), "--runs-dir", str(tmp_path / "runs"), "--nproc-per-node", "2"
    )
    assert result.returncode != 0
    assert "train.batch_size 33 (the global batch) does not split over 2 processes" in result.stderr
    assert result.stderr.count("does not split") == 1  # said once, by rank 0
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_resume_under_torchrun_extends_the_run(write: Callable[..., Path], tmp_path: Path) -> None:
    spec = write(PLAIN, "ddp.yaml")
    first = nncli("train", str(spec), "--runs-dir", str(tmp_path), "-q", "--nproc-per-node", "2")
    assert first.returncode == 0, first.stderr
    folder = Path(first.stdout.strip())
    again = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node=2",
            "-m",
            "nncli",
            "resume",
            str(folder),
            "--epochs",
            "5",
            "-q",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert again.returncode == 0, again.stderr
    assert [r["epoch"] for r in losses(folder)] == [1, 2, 3, 4, 5]
    info = json.loads((folder / "run.json").read_text())
    assert info["status"] == "completed"
    assert info["epochs_done"] == 5
    assert len(list(tmp_path.iterdir())) == 2  # the spec file and the one run folder


def test_a_half_set_torchrun_environment_is_named(tmp_path: Path) -> None:
    half = {"WORLD_SIZE": "2"}  # as if torchrun had set one variable of three
    version = nncli("--version", env=half)
    assert version.returncode == 0, version.stderr  # commands that train nothing still work
    circles = EXPERIMENTS / "circles.yaml"
    trained = nncli("train", str(circles), "--runs-dir", str(tmp_path), env=half)
    assert trained.returncode == 2
    assert trained.stderr.strip() == (
        "error WORLD_SIZE='2', RANK=None and LOCAL_RANK=None do not name a process of a job; "
        "start the processes with torchrun (or nncli train --nproc-per-node N), or unset "
        "WORLD_SIZE"
    )
    assert not any(tmp_path.iterdir())
