"""The run folder's logger: checkpoints written beside training, and on disk before
run.json says how the run ended."""

from __future__ import annotations

import csv
import errno
import io
import json
import threading
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from nncli.cli.app import app
from nncli.loggers import run_folder
from nncli.runs.files import write_failed


def epoch_of(data: bytes) -> int:
    return int(torch.load(io.BytesIO(data), weights_only=True)["epoch"])


def rows(folder: Path) -> list[dict[str, str]]:
    with (folder / "metrics.csv").open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_training_goes_on_while_a_checkpoint_is_written_and_train_returns_with_all_on_disk(
    runner: CliRunner, tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Epoch 1's last.pt is held back until epoch 2's row is in metrics.csv: training did
    not wait for the disk. When `nncli train` returns, every checkpoint is whole and run.json
    says completed."""
    real = run_folder.write_bytes_atomic
    runs = tmp_path / "runs"
    next_row = threading.Event()
    seen: list[tuple[str, int, bool]] = []

    def write(path: Path, data: bytes) -> None:
        if path.name == "last.pt" and epoch_of(data) == 1:
            (folder,) = runs.iterdir()
            for _ in range(200):  # up to 10 s
                if len(rows(folder)) >= 2:
                    next_row.set()
                    break
                next_row.wait(0.05)
        seen.append((path.name, epoch_of(data), next_row.is_set()))
        real(path, data)

    monkeypatch.setattr(run_folder, "write_bytes_atomic", write)
    result = runner.invoke(app, ["train", str(tiny), "--runs-dir", str(runs), "-q"])
    assert result.exit_code == 0, result.output
    assert ("last.pt", 1, True) in seen, seen
    folder = Path(result.stdout.strip())
    info = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    assert info["status"] == "completed"
    assert [int(r["epoch"]) for r in rows(folder)] == [1, 2, 3]
    last = torch.load(folder / "checkpoints" / "last.pt", weights_only=True)
    best = torch.load(folder / "checkpoints" / "best.pt", weights_only=True)
    assert last["epoch"] == 3
    assert best["epoch"] == info["best_checkpoint"]["epoch"]
    assert [name for name, epoch, _ in seen if name == "last.pt"] == ["last.pt"] * 3
    assert not list(folder.rglob(".*.tmp"))


def test_a_checkpoint_that_fails_on_the_last_epoch_fails_the_run_naming_it(
    runner: CliRunner, tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The failure surfaces when the run ends, after the last epoch: the run is marked failed
    (not completed) and last.pt is epoch 2's, as last saved."""
    real = run_folder.write_bytes_atomic

    def write(path: Path, data: bytes) -> None:
        if path.name == "last.pt" and epoch_of(data) == 3:
            raise write_failed(path, OSError(errno.ENOSPC, "No space left on device"))
        real(path, data)

    monkeypatch.setattr(run_folder, "write_bytes_atomic", write)
    runs = tmp_path / "runs"
    result = runner.invoke(app, ["train", str(tiny), "--runs-dir", str(runs), "-q"])
    assert result.exit_code == 2, result.output
    (folder,) = runs.iterdir()
    assert result.stderr.startswith(
        f"error cannot write {folder}/checkpoints/last.pt: No space left on device (the disk "
        f"is full; free some space); the run is marked failed: {folder}."
    )
    info = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    assert info["status"] == "failed"
    assert torch.load(folder / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 2


def test_an_interrupted_run_whose_checkpoint_failed_stays_interrupted_with_the_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C while a checkpoint could not be written: the run is still interrupted (resume
    goes on from last.pt as last saved), run.json names the file, and nothing is raised."""
    from nncli.runs.folder import Run

    def write(path: Path, data: bytes) -> None:
        raise write_failed(path, OSError(errno.ENOSPC, "No space left on device"))

    monkeypatch.setattr(run_folder, "write_bytes_atomic", write)
    run = Run.create(tmp_path, "x", "x: 1\n", "x: 1\n", {})
    logger = run_folder.RunFolderLogger(run)
    logger.saver.put([run.checkpoint_path("last.pt")], b"state")
    logger.finish("interrupted", None, None)
    info = json.loads((run.path / "run.json").read_text(encoding="utf-8"))
    assert info["status"] == "interrupted"
    assert info["error"] == (
        f"cannot write {run.path}/checkpoints/last.pt: No space left on device (the disk is "
        "full; free some space)"
    )
    assert not (run.path / "checkpoints" / "last.pt").exists()
