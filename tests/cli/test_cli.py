from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import EXPERIMENTS, ROOT, TINY
from typer.testing import CliRunner

from nncli.cli.app import app
from nncli.config.spec import load_spec
from nncli.runs import record


def train(runner: CliRunner, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["train", *args])
    return result.exit_code, result.stdout, result.stderr


def command_names() -> list[str]:
    return sorted(c.name or c.callback.__name__ for c in app.registered_commands)  # type: ignore[union-attr]


@pytest.mark.parametrize("command", command_names())
def test_every_command_has_help(runner: CliRunner, command: str) -> None:
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.stdout
    assert "--help" in result.stdout


def test_top_level_help_and_version(runner: CliRunner) -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("train", "validate", "list", "schema", "show"):
        assert command in result.stdout
    version = runner.invoke(app, ["--version"])
    assert version.stdout.strip() == "nncli 0.1.0"


def test_help_and_validate_do_not_import_torch(tiny: Path) -> None:
    code = (
        "import sys\n"
        "from nncli.cli.app import main\n"
        f"sys.argv = ['nncli', 'validate', {str(tiny)!r}]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = sorted(m for m in ('torch', 'pandas', 'matplotlib', 'sklearn') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY []" in out.stdout, out.stdout + out.stderr


def test_help_loads_no_pydantic() -> None:
    """`nncli --help` answers from typer and rich alone: pydantic's import (60-90 ms) was a
    third of its time. (A command's own --help loads it anyway: typer 0.29 checks each
    option's value with pydantic.)"""
    code = (
        "import sys\n"
        "from nncli.cli.app import main\n"
        "sys.argv = ['nncli', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = sorted(m for m in ('torch', 'pydantic', 'yaml') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY []" in out.stdout, out.stdout + out.stderr


def test_python_dash_m_works() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "nncli", "--help"], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0
    assert "validate" in out.stdout


def test_train_writes_a_complete_run_folder(runner: CliRunner, tiny: Path, tmp_path: Path) -> None:
    code, stdout, stderr = train(runner, str(tiny), "--runs-dir", str(tmp_path / "runs"))
    assert code == 0, stdout + stderr
    folder = Path(stdout.strip().splitlines()[-1])
    assert folder.parent == tmp_path / "runs"
    assert folder.name.split("_")[1] == "tiny"

    names = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert names == {
        "preprocessing.json",
        "config.yaml",
        "spec.yaml",
        "run.json",
        "report.html",
        "metrics.csv",
        "log.txt",
        "checkpoints/last.pt",
        "checkpoints/best.pt",
        "plots/loss.png",
        "plots/accuracy.png",
        "plots/f1.png",
        "plots/confusion_matrix.png",
        "plots/decision_boundary.png",
        "plots/data.png",
    }

    # the file as given, and the resolved spec that re-creates it
    assert (folder / "spec.yaml").read_text() == TINY
    assert load_spec(folder / "config.yaml") == load_spec(tiny)

    # one row per epoch, stable header
    with (folder / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    header = list(rows[0])
    assert header == [
        "epoch",
        *(f"{s}_{m}" for s in ("train", "val", "test") for m in ("loss", "accuracy", "f1")),
        "lr",
        "time_s",
    ]
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert all(0.0 <= float(r["test_accuracy"]) <= 1.0 for r in rows)
    assert all(float(r["lr"]) == 0.05 for r in rows)

    info = json.loads((folder / "run.json").read_text())
    assert info["status"] == "completed"
    assert info["epochs_done"] == 3
    assert info["device"] == "cpu"
    assert info["seed"] == 7
    assert info["task"] == "binary"
    assert info["n_params"] == 2 * 8 + 8 + 8 + 1
    assert info["samples"] == {"train": 120, "val": 40, "test": 40}
    assert info["versions"]["torch"] == torch.__version__
    assert info["final"]["test_accuracy"] == pytest.approx(float(rows[-1]["test_accuracy"]))
    best_loss = min(float(r["val_loss"]) for r in rows)
    assert info["best"]["val_loss"]["value"] == pytest.approx(best_loss)
    assert info["monitor"] == "val_loss"
    assert info["duration_s"] >= 0

    checkpoint = torch.load(folder / "checkpoints/last.pt", weights_only=True)
    assert checkpoint["epoch"] == 3
    assert set(checkpoint["model"]) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    best = torch.load(folder / "checkpoints/best.pt", weights_only=True)
    assert best["epoch"] == info["best"]["val_loss"]["epoch"]

    log = (folder / "log.txt").read_text()
    assert "epoch 3/3" in log
    assert "done in" in log
    assert (folder / "plots/loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_quiet_prints_only_the_folder(runner: CliRunner, tiny: Path, tmp_path: Path) -> None:
    code, stdout, _ = train(runner, str(tiny), "--runs-dir", str(tmp_path), "-q")
    assert code == 0
    lines = stdout.strip().splitlines()
    assert len(lines) == 1
    assert Path(lines[0]).is_dir()


def test_smoke_profile(runner: CliRunner, tmp_path: Path) -> None:
    code, stdout, stderr = train(
        runner, str(EXPERIMENTS / "circles.yaml"), "--smoke", "--runs-dir", str(tmp_path)
    )
    assert code == 0, stdout + stderr
    folder = Path(stdout.strip().splitlines()[-1])
    info = json.loads((folder / "run.json").read_text())
    assert info["smoke"] is True
    assert info["device"] == "cpu"
    assert info["epochs"] == 1
    assert len(record.read_metrics(folder)) == 1
    assert (folder / "plots" / "decision_boundary.png").is_file()


def assert_nothing_written(tmp_path: Path) -> None:
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_misspelt_key_exits_2_with_located_message(
    runner: CliRunner, write: Callable[..., Path], tmp_path: Path
) -> None:
    path = write(TINY.replace("batch_size", "batchsize"))
    code, stdout, stderr = train(runner, str(path), "--runs-dir", str(tmp_path / "runs"))
    assert code == 2
    assert stderr.strip() == (
        f"error {path}:16:20  train.batchsize  unknown key 'batchsize'  (did you mean 'batch_size'?)"
    )
    assert "Traceback" not in stdout + stderr
    assert_nothing_written(tmp_path)


def test_wrong_type_exits_2(runner: CliRunner, write: Callable[..., Path], tmp_path: Path) -> None:
    path = write(TINY.replace("lr: 0.05", "lr: fast"))
    code, _, stderr = train(runner, str(path), "--runs-dir", str(tmp_path / "runs"))
    assert code == 2
    assert "optimizer.lr  Input should be a valid number, got 'fast'" in stderr
    assert_nothing_written(tmp_path)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message where CUDA is absent")
def test_unavailable_device_is_refused_before_any_folder(
    runner: CliRunner, tiny: Path, tmp_path: Path
) -> None:
    code, _, stderr = train(
        runner, str(tiny), "--set", "train.device=cuda:7", "--runs-dir", str(tmp_path / "runs")
    )
    assert code == 2
    assert "train.device is 'cuda:7' but this machine has no CUDA device" in stderr
    assert_nothing_written(tmp_path)


def test_shape_mismatch_names_the_layer(
    runner: CliRunner, write: Callable[..., Path], tmp_path: Path
) -> None:
    path = write(TINY.replace("- dense: 8", "- conv2d: 4"))
    code, _, stderr = train(runner, str(path), "--runs-dir", str(tmp_path / "runs"))
    assert code == 2
    assert f"error {path}:10:7  model.layers.0  conv2d(out_channels=4" in stderr
    assert "needs an input of 3 dimension(s) per sample, got (2,)" in stderr
    assert_nothing_written(tmp_path)


def test_impossible_loss_and_data_pairing(
    runner: CliRunner, write: Callable[..., Path], tmp_path: Path
) -> None:
    text = TINY.replace("source: circles", "source: blobs\n  centers: 3").replace(
        "  noise: 0.05\n", ""
    )
    code, _, stderr = train(runner, str(write(text)), "--runs-dir", str(tmp_path / "runs"))
    assert code == 2
    assert "loss 'bce' is for two classes (0/1) but the data has 3" in stderr
    assert "cross_entropy with a final dense: 3" in stderr
    assert_nothing_written(tmp_path)


def test_missing_file(runner: CliRunner, tmp_path: Path) -> None:
    code, _, stderr = train(runner, str(tmp_path / "nope.yaml"))
    assert code == 2
    assert "nope.yaml  <top>  no such file  (check the path)" in stderr


def test_show_prints_the_learned_line(runner: CliRunner, tmp_path: Path) -> None:
    code, stdout, _ = train(
        runner, str(EXPERIMENTS / "linear_regression.yaml"), "--runs-dir", str(tmp_path), "-q"
    )
    assert code == 0
    result = runner.invoke(app, ["show", stdout.strip(), "--weights"])
    assert result.exit_code == 0, result.output
    line = next(ln for ln in result.stdout.splitlines() if ln.startswith("y = "))
    slope, intercept = float(line.split()[2]), float(line.split()[-1])
    assert slope == pytest.approx(2.0, abs=0.1)
    assert intercept == pytest.approx(1.0, abs=0.1)
    assert "status completed, 200/200 epochs" in result.stdout


def test_show_refuses_a_non_run(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["show", str(tmp_path)])
    assert result.exit_code == 2
    assert "is not a run folder: it has no run.json" in result.stderr


def test_internal_failure_marks_run_failed(
    runner: CliRunner, tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nncli.engine.experiment

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("plotting exploded")

    monkeypatch.setattr(nncli.engine.experiment, "write_plots", broken)
    code, _stdout, stderr = train(runner, str(tiny), "--runs-dir", str(tmp_path / "runs"))
    assert code == 1
    assert "internal error RuntimeError: plotting exploded" in stderr
    assert "Traceback" not in stderr
    (folder,) = (tmp_path / "runs").iterdir()
    info = json.loads((folder / "run.json").read_text())
    assert info["status"] == "failed"
    assert info["error"] == "RuntimeError: plotting exploded"
    assert info["epochs_done"] == 3  # what was written is kept
    assert "Traceback" in (folder / "log.txt").read_text()
    assert len(record.read_metrics(folder)) == 3


def test_a_failure_before_the_first_epoch_marks_the_run_failed(
    runner: CliRunner, tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the folder existed, the run failed before fitting, and run.json stayed `running`
    from nncli.data import Dataset

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("preprocessing exploded")

    monkeypatch.setattr(Dataset, "save_preprocessing", broken)
    code, _stdout, stderr = train(runner, str(tiny), "--runs-dir", str(tmp_path / "runs"))
    assert code == 1
    assert "internal error RuntimeError: preprocessing exploded" in stderr
    (folder,) = (tmp_path / "runs").iterdir()
    info = json.loads((folder / "run.json").read_text())
    assert (info["status"], info["epochs_done"]) == ("failed", 0)
    assert info["error"] == "RuntimeError: preprocessing exploded"
    assert "Traceback" in (folder / "log.txt").read_text()


def test_ctrl_c_marks_run_interrupted_and_keeps_epochs(
    runner: CliRunner, tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nncli.loggers.run_folder

    original = nncli.loggers.run_folder.RunFolderLogger.epoch

    def epoch_end(
        self: nncli.loggers.run_folder.RunFolderLogger,
        row: dict[str, float],
        *args: Any,
        **kwargs: Any,
    ) -> None:
        original(self, row, *args, **kwargs)
        if row["epoch"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(nncli.loggers.run_folder.RunFolderLogger, "epoch", epoch_end)
    code, _, stderr = train(runner, str(tiny), "--runs-dir", str(tmp_path / "runs"))
    assert code == 130
    assert "interrupted" in stderr
    (folder,) = (tmp_path / "runs").iterdir()
    assert json.loads((folder / "run.json").read_text())["status"] == "interrupted"
    assert [r["epoch"] for r in record.read_metrics(folder)] == [1.0, 2.0]
    assert torch.load(folder / "checkpoints/last.pt", weights_only=True)["epoch"] == 2


ABSENT = {  # the data folder an example needs that a fresh clone lacks: its error's start
    "source: mnist": ("mnist", "12:3  data.folder", "does not exist; nncli downloads nothing"),
    "source: images": ("digits_folder", "10:3  data.path", "does not exist; name a folder"),
}


def absent_folder(path: Path) -> tuple[str, str, str] | None:
    """mnist_mlp.yaml reads MNIST's files, which nncli never downloads, and
    digits_folder.yaml the PNG files scripts/make_digits_folder.py writes (see README)."""
    text = path.read_text()
    found = [v for k, v in ABSENT.items() if k in text]
    return found[0] if found and not (ROOT / "data" / found[0][0]).is_dir() else None


def needs_absent_files(path: Path) -> bool:
    return absent_folder(path) is not None


def test_experiment_files_all_validate(runner: CliRunner) -> None:
    files = sorted(str(p) for p in EXPERIMENTS.glob("*.yaml"))
    assert len(files) >= 15
    buildable = [f for f in files if not needs_absent_files(Path(f))]
    result = runner.invoke(app, ["validate", *buildable])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["validate", "--build", *buildable])
    assert result.exit_code == 0, result.output
    # validate checks the data's files: those a fresh clone lacks are said to be missing
    for absent in sorted(set(files) - set(buildable)):
        result = runner.invoke(app, ["validate", absent])
        assert result.exit_code == 2, result.output
        folder, where, says = absent_folder(Path(absent)) or ("", "", "")
        assert result.stderr.startswith(
            f"error {absent}:{where}  {ROOT / 'data' / folder} {says}"
        ), result.stderr


@pytest.mark.parametrize("path", sorted(EXPERIMENTS.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_experiment_runs_one_smoke_epoch(
    runner: CliRunner, path: Path, tmp_path: Path
) -> None:
    if needs_absent_files(path):
        pytest.skip(f"{path.name} needs files in data/ that a fresh clone lacks (see README)")
    code, stdout, stderr = train(runner, str(path), "--smoke", "--runs-dir", str(tmp_path), "-q")
    assert code == 0, stdout + stderr
    info = json.loads((Path(stdout.strip()) / "run.json").read_text())
    assert info["status"] == "completed"
