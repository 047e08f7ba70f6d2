"""Training that survives: exact resume after SIGKILL, SIGTERM, refusals, locks, tampered
checkpoints, divergence, early stopping, schedules, clipping and precision."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import TINY, interrupted_run
from typer.testing import CliRunner

from nncli.cli.app import app
from nncli.runs.lock import LOCK

# long enough epochs (225 batches) that a kill lands between epochs, not after the run
SLOW = """\
name: slow
seed: 3
data: {source: moons, n_samples: 3000, noise: 0.2, split: {val: 0.2, test: 0.2}}
model:
  layers: [dense: 16, relu, dropout: 0.1, dense: 1, sigmoid]
loss: bce
optimizer: {name: adam, lr: 0.01}
scheduler: {name: cosine, warmup_epochs: 1}
train: {epochs: 7, batch_size: 8, device: cpu}
metrics: [accuracy]
"""


def nncli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nncli", *args], capture_output=True, text=True, check=False
    )


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "nncli", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_rows(runs_dir: Path, rows: int, timeout: float = 60) -> Path:
    """The run folder once its metrics.csv holds `rows` epochs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for folder in runs_dir.glob("*"):
            metrics = folder / "metrics.csv"
            if metrics.is_file() and len(metrics.read_text().splitlines()) > rows:
                return folder
        time.sleep(0.01)
    raise AssertionError(f"no run reached {rows} epochs in {timeout}s")


def rows_without_time(folder: Path) -> list[dict[str, str]]:
    with (folder / "metrics.csv").open() as f:
        return [{k: v for k, v in r.items() if k != "time_s"} for r in csv.DictReader(f)]


def weights(folder: Path, name: str = "last.pt") -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = torch.load(folder / "checkpoints" / name, weights_only=True)[
        "model"
    ]
    return state


def info(folder: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads((folder / "run.json").read_text())
    return data


@pytest.fixture
def slow(write: Callable[..., Path]) -> Path:
    return write(SLOW, "slow.yaml")


@pytest.mark.slow
@pytest.mark.parametrize("kill_after", [1, 3])
def test_sigkill_then_resume_equals_an_uninterrupted_run(
    slow: Path, tmp_path: Path, kill_after: int
) -> None:
    whole = nncli("train", str(slow), "--runs-dir", str(tmp_path / "whole"), "-q")
    assert whole.returncode == 0, whole.stderr
    reference = Path(whole.stdout.strip())

    proc = start("train", str(slow), "--runs-dir", str(tmp_path / "killed"), "-q")
    folder = wait_for_rows(tmp_path / "killed", kill_after)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert info(folder)["status"] == "running"  # nobody could record the kill

    resumed = nncli("resume", str(folder), "-q")
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.strip() == str(folder)
    assert rows_without_time(folder) == rows_without_time(reference)
    mine, theirs = weights(folder), weights(reference)
    assert all(torch.equal(mine[k], theirs[k]) for k in theirs)
    done = info(folder)
    assert done["status"] == "completed"
    assert done["epochs_done"] == 7
    assert [r["after_epoch"] for r in done["resumed"]] in ([kill_after], [kill_after - 1])  # type: ignore[union-attr]
    assert not (folder / LOCK).exists()


@pytest.mark.slow
def test_sigterm_marks_interrupted_and_resume_finishes(slow: Path, tmp_path: Path) -> None:
    proc = start("train", str(slow), "--runs-dir", str(tmp_path), "-q")
    folder = wait_for_rows(tmp_path, 1)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143
    assert "the run is marked interrupted" in stderr
    assert f"nncli resume {folder}" in stderr
    assert info(folder)["status"] == "interrupted"
    done_before = int(info(folder)["epochs_done"])  # type: ignore[call-overload]
    assert torch.load(folder / "checkpoints/last.pt", weights_only=True)["epoch"] == done_before
    resumed = nncli("resume", str(folder), "-q")
    assert resumed.returncode == 0, resumed.stderr
    assert [int(r["epoch"]) for r in rows_without_time(folder)] == list(range(1, 8))


def test_resume_drops_a_half_written_line_and_temporaries(
    runner: CliRunner, tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = interrupted_run(runner, tiny, tmp_path / "runs", monkeypatch, at=2)
    with (folder / "metrics.csv").open("a") as f:
        f.write("3,0.61,0.7")  # a row cut off by the kill
    (folder / "checkpoints" / ".last.pt.99999.tmp").write_bytes(b"partial")
    result = runner.invoke(app, ["resume", str(folder), "-q"])
    assert result.exit_code == 0, result.output
    assert [int(r["epoch"]) for r in rows_without_time(folder)] == [1, 2, 3]
    assert not list((folder / "checkpoints").glob(".*.tmp"))
    assert info(folder)["status"] == "completed"


def test_train_dash_dash_resume_is_the_same_command(
    runner: CliRunner, tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = interrupted_run(runner, tiny, tmp_path / "runs", monkeypatch, at=2)
    result = runner.invoke(app, ["train", "--resume", str(folder)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == str(folder)
    assert info(folder)["epochs_done"] == 3


def test_completed_run_is_refused_unless_extended(
    runner: CliRunner, tiny: Path, tmp_path: Path
) -> None:
    result = runner.invoke(app, ["train", str(tiny), "--runs-dir", str(tmp_path), "-q"])
    folder = Path(result.stdout.strip())
    refused = runner.invoke(app, ["resume", str(folder)])
    assert refused.exit_code == 2
    assert (
        "is completed (3 epochs); to train it further give --epochs N with N above 3"
        in refused.stderr
    )
    extended = runner.invoke(app, ["resume", str(folder), "--epochs", "5", "-q"])
    assert extended.exit_code == 0, extended.output
    assert [int(r["epoch"]) for r in rows_without_time(folder)] == [1, 2, 3, 4, 5]
    assert "epochs: 5" in (folder / "config.yaml").read_text()
    assert info(folder)["epochs"] == 5


def test_a_run_that_stopped_early_trains_further_when_extended(
    runner: CliRunner, write: Callable[..., Path], tmp_path: Path
) -> None:
    # resume --epochs N trained nothing: the stale count that stopped it stopped it again
    text = TINY.replace(
        "train: {epochs: 3, batch_size: 32, device: cpu}",
        "train:\n  epochs: 10\n  batch_size: 32\n  device: cpu\n"
        "  early_stopping: {patience: 1, min_delta: 100}",  # no epoch after the first improves
    )
    result = runner.invoke(app, ["train", str(write(text)), "--runs-dir", str(tmp_path), "-q"])
    assert result.exit_code == 0, result.output
    folder = Path(result.stdout.strip())
    assert (info(folder)["epochs_done"], info(folder)["stopped_early"]) == (2, True)
    extended = runner.invoke(app, ["resume", str(folder), "--epochs", "12", "-q"])
    assert extended.exit_code == 0, extended.output
    # early stopping counts anew from where it stopped: one more stale epoch, then it stops
    assert [int(r["epoch"]) for r in rows_without_time(folder)] == [1, 2, 3]
    assert (info(folder)["epochs_done"], info(folder)["stopped_early"]) == (3, True)


def test_not_a_run_and_edited_config_are_refused(
    runner: CliRunner, tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    refused = runner.invoke(app, ["resume", str(tmp_path)])
    assert refused.exit_code == 2
    assert "is not a run folder: it has no run.json" in refused.stderr

    folder = interrupted_run(runner, tiny, tmp_path / "runs", monkeypatch, at=2)
    config = folder / "config.yaml"
    config.write_text(config.read_text().replace("lr: 0.05", "lr: 0.5"))
    refused = runner.invoke(app, ["resume", str(folder)])
    assert refused.exit_code == 2
    assert "was edited after the run started (optimizer.lr: 0.05 -> 0.5)" in refused.stderr
    assert info(folder)["status"] == "interrupted"  # untouched


def test_a_live_lock_refuses_and_a_stale_lock_is_taken_over(
    runner: CliRunner, tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = interrupted_run(runner, tiny, tmp_path / "runs", monkeypatch, at=2)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (folder / LOCK).write_text(f"{sleeper.pid}\n")
        refused = runner.invoke(app, ["resume", str(folder)])
        assert refused.exit_code == 2
        assert f"is in use by process {sleeper.pid}" in refused.stderr
    finally:
        sleeper.kill()
        sleeper.wait()
    result = runner.invoke(app, ["resume", str(folder), "-q"])  # its process is gone now
    assert result.exit_code == 0, result.output
    assert not (folder / LOCK).exists()


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[..., object], tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_carrying_code_is_refused_and_not_run(
    runner: CliRunner, tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = interrupted_run(runner, tiny, tmp_path / "runs", monkeypatch, at=2)
    marker = tmp_path / "pwned"
    torch.save({"model": _Payload(marker)}, folder / "checkpoints" / "last.pt")
    for args in (["resume", str(folder)], ["show", str(folder), "--weights"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        assert "last.pt is not a checkpoint nncli can load safely" in result.stderr
    assert not marker.exists()
    (folder / "checkpoints" / "last.pt").write_bytes(b"\x80\x02truncated")
    result = runner.invoke(app, ["resume", str(folder)])
    assert result.exit_code == 2
    assert "last.pt is damaged (not a whole checkpoint" in result.stderr


def test_divergence_stops_with_exit_3_and_saves_no_bad_weights(
    runner: CliRunner, write: Callable[..., Path], tmp_path: Path
) -> None:
    exploding = """\
data: {source: linear, n_samples: 64, weights: [3.0, -2.0]}
model: {layers: [dense: 8, dense: 1]}
loss: mse
optimizer: {name: sgd, lr: 10.0}
train: {epochs: 5, batch_size: 8, device: cpu}
"""
    result = runner.invoke(
        app, ["train", str(write(exploding)), "--runs-dir", str(tmp_path / "runs")]
    )
    assert result.exit_code == 3
    assert "the training loss became non-finite in epoch 1, batch" in result.stderr
    assert "Try a lower learning rate" in result.stderr
    folder = Path(result.stdout.strip().splitlines()[-1])
    assert info(folder)["status"] == "diverged"
    assert not (folder / "checkpoints" / "best.pt").exists()
    assert not (folder / "checkpoints" / "last.pt").exists()
    refused = runner.invoke(app, ["resume", str(folder)])
    assert refused.exit_code == 2
    assert "diverged; resuming would diverge again" in refused.stderr


def test_early_stopping_restores_the_best_weights(
    runner: CliRunner, write: Callable[..., Path], tmp_path: Path
) -> None:
    text = TINY.replace(
        "train: {epochs: 3, batch_size: 32, device: cpu}",
        "train:\n  epochs: 60\n  batch_size: 32\n  device: cpu\n  monitor: val_accuracy\n"
        "  early_stopping: {patience: 3}",
    )
    result = runner.invoke(app, ["train", str(write(text)), "--runs-dir", str(tmp_path), "-q"])
    assert result.exit_code == 0, result.output
    folder = Path(result.stdout.strip())
    done = info(folder)
    rows = rows_without_time(folder)
    best_epoch = done["best_checkpoint"]["epoch"]  # type: ignore[index]
    assert done["stopped_early"] is True
    assert len(rows) == best_epoch + 3 < 60  # type: ignore[operator]
    accuracies = [float(r["val_accuracy"]) for r in rows]
    assert accuracies.index(max(accuracies)) + 1 == best_epoch
    best, last = weights(folder, "best.pt"), weights(folder, "last.pt")
    assert all(torch.equal(best[k], last[k]) for k in best)


@pytest.mark.parametrize(
    ("scheduler", "expected"),
    [
        ("{name: step, step_size: 1, gamma: 0.5}", [0.05, 0.025, 0.0125, 0.00625]),
        ("{name: multistep, milestones: [2], gamma: 0.1}", [0.05, 0.05, 0.005, 0.005]),
        ("{name: exponential, gamma: 0.9}", [0.05, 0.045, 0.0405, 0.03645]),
        ("{name: cosine, warmup_epochs: 1}", [0.005, 0.05, 0.0375, 0.0125]),
    ],
)
def test_schedulers_set_the_lr_column(
    runner: CliRunner, tiny: Path, tmp_path: Path, scheduler: str, expected: list[float]
) -> None:
    result = runner.invoke(
        app,
        [
            "train",
            str(tiny),
            "--runs-dir",
            str(tmp_path),
            "-q",
            "--set",
            f"scheduler={scheduler}",
            "--set",
            "train.epochs=4",
        ],
    )
    assert result.exit_code == 0, result.output
    lrs = [float(r["lr"]) for r in rows_without_time(Path(result.stdout.strip()))]
    assert lrs == pytest.approx(expected)


def test_onecycle_and_plateau(runner: CliRunner, tiny: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "train",
            str(tiny),
            "--runs-dir",
            str(tmp_path / "a"),
            "-q",
            "--set",
            "scheduler={name: onecycle, max_lr: 0.1}",
            "--set",
            "train.epochs=4",
        ],
    )
    assert result.exit_code == 0, result.output
    lrs = [float(r["lr"]) for r in rows_without_time(Path(result.stdout.strip()))]
    assert max(lrs) <= 0.1
    assert lrs[-1] < lrs[1]  # annealed towards the end
    result = runner.invoke(
        app,
        [
            "train",
            str(tiny),
            "--runs-dir",
            str(tmp_path / "b"),
            "-q",
            "--set",
            "scheduler={name: plateau, patience: 0, factor: 0.5, threshold: 10}",
            "--set",
            "train.epochs=3",
        ],
    )
    lrs = [float(r["lr"]) for r in rows_without_time(Path(result.stdout.strip()))]
    assert lrs == pytest.approx([0.05, 0.025, 0.0125])  # never "improves" by threshold 10


def test_gradient_clipping_bounds_each_step(write: Callable[..., Path]) -> None:
    from conftest import Rows

    from nncli.config import yamlio
    from nncli.config.spec import validate
    from nncli.engine.fit import fit
    from nncli.engine.prepare import prepare

    text = TINY.replace("{name: adam, lr: 0.05}", "{name: sgd, lr: 1.0}")
    for setting, bound in (
        ("train.clip_grad_norm=1e-4", 1e-4),
        ("train.clip_grad_value=1e-5", 1e-5),
    ):
        spec = validate(yamlio.loads(text), ("train.epochs=1", setting))
        p = prepare(spec)
        before = [w.detach().clone() for w in p.model.parameters()]
        fit(p, Rows(), max_batches=1)
        moved = [(w.detach() - b) for w, b in zip(p.model.parameters(), before, strict=True)]
        if "norm" in setting:
            total = torch.sqrt(sum((m**2).sum() for m in moved))  # type: ignore[arg-type]
            assert float(total) <= bound * 1.01  # float32 rounding of w + dw - w
        else:
            assert max(float(m.abs().max()) for m in moved) <= bound * 1.01


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_runs_under_autocast(precision: str) -> None:
    from conftest import Rows

    from nncli.config import yamlio
    from nncli.config.spec import validate
    from nncli.engine.fit import fit
    from nncli.engine.prepare import prepare

    losses = {}
    for mode in ("fp32", precision):
        sink = Rows()
        fit(prepare(validate(yamlio.loads(TINY), (f"train.precision={mode}",))), sink)
        losses[mode] = sink.rows[-1]["train_loss"]
    assert losses[precision] != losses["fp32"]  # the forward pass really ran in low precision
    assert losses[precision] == pytest.approx(losses["fp32"], rel=0.02)


def test_compile_falls_back_with_a_warning(
    runner: CliRunner, tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_compiler(*args: object, **kwargs: object) -> object:
        raise RuntimeError("no C++ compiler found")

    monkeypatch.setattr(torch, "compile", no_compiler)
    result = runner.invoke(
        app, ["train", str(tiny), "--runs-dir", str(tmp_path), "--set", "train.compile=true"]
    )
    assert result.exit_code == 0, result.output
    assert (
        "warning torch.compile is not available here (no C++ compiler found); training without it"
        in result.stderr
    )
    folder = Path(result.stdout.strip().splitlines()[-1])
    assert "torch.compile is not available" in (folder / "log.txt").read_text()


def test_checkpoint_every_skips_last_but_not_best_or_the_end(
    runner: CliRunner, tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    import torch

    import nncli.loggers.run_folder

    saved: list[tuple[str, int]] = []
    real = nncli.loggers.run_folder.write_bytes_atomic

    def spy(path: Path, data: bytes) -> None:
        saved.append((path.name, int(torch.load(io.BytesIO(data), weights_only=True)["epoch"])))
        real(path, data)

    monkeypatch.setattr(nncli.loggers.run_folder, "write_bytes_atomic", spy)
    result = runner.invoke(
        app,
        [
            "train",
            str(tiny),
            "--runs-dir",
            str(tmp_path),
            "-q",
            "--set",
            "train.checkpoint_every=2",
            "--set",
            "train.epochs=5",
        ],
    )
    assert result.exit_code == 0, result.output
    assert [e for name, e in saved if name == "last.pt"] == [2, 4, 5]
