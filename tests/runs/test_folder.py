"""Run folders made and finished: processes started in the same second, a runs folder that
cannot exist or is unwritable, a disk full while a folder is made."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import QUICK, info, nncli
from typer.testing import CliRunner

from nncli.cli.app import app
from nncli.engine.state import verify_checkpoint
from nncli.runs import folder as runs
from nncli.runs import record
from nncli.runs.folder import Run


def files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


# --- many writers ---------------------------------------------------------------------------


@pytest.mark.slow
def test_eight_trains_started_at_once_make_eight_complete_folders(
    write: Callable[..., Path], tmp_path: Path
) -> None:
    spec = write(QUICK, "quick.yaml")
    procs = [
        nncli("train", str(spec), "--runs-dir", str(tmp_path / "runs"), "-q") for _ in range(8)
    ]
    outcomes = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, [err for _, err in outcomes]
    printed = {Path(out.strip()) for out, _ in outcomes}
    folders = set((tmp_path / "runs").iterdir())
    assert len(folders) == 8
    assert printed == folders
    expected = files(sorted(folders)[0])
    for folder in folders:
        done = info(folder)
        assert done["status"] == "completed"
        assert done["epochs_done"] == 2
        assert len(record.read_metrics(folder)) == 2
        assert files(folder) == expected  # no lock, no temporary, nothing missing
        assert torch.load(folder / "checkpoints/last.pt", weights_only=True)["epoch"] == 2
        verify_checkpoint(folder / "checkpoints/last.pt")


# --- a full disk or an unwritable folder ------------------------------------------------------


def test_a_runs_folder_that_cannot_exist_is_a_clear_error(
    runner: CliRunner, tiny: Path, tmp_path: Path
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder\n")
    before = files(tmp_path)
    result = runner.invoke(app, ["train", str(tiny), "--runs-dir", str(blocker / "runs")])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == (
        f"error cannot create the folder {blocker / 'runs'}: Not a directory"
    )
    assert files(tmp_path) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="permission bits do not stop root")
def test_an_unwritable_runs_folder_is_a_clear_error(
    runner: CliRunner, tiny: Path, tmp_path: Path
) -> None:
    locked_dir = tmp_path / "runs"
    locked_dir.mkdir(mode=0o555)
    try:
        result = runner.invoke(app, ["train", str(tiny), "--runs-dir", str(locked_dir)])
    finally:
        locked_dir.chmod(0o755)
    assert result.exit_code == 2, result.output
    assert f"cannot create a folder in {locked_dir}: Permission denied" in result.stderr
    assert list(locked_dir.iterdir()) == []


def test_a_disk_full_while_creating_the_folder_leaves_nothing(
    runner: CliRunner, tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(self: Run, **updates: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(self.path / "run.json"))

    monkeypatch.setattr(Run, "write_info", full)
    result = runner.invoke(app, ["train", str(tiny), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2, result.output
    assert "/run.json: No space left on device (the disk is full; free some space)" in (
        result.stderr
    )
    assert "Traceback" not in result.output
    assert list((tmp_path / "runs").iterdir()) == []  # the half-made folder is gone


def test_a_run_json_without_a_start_still_finishes(tmp_path: Path) -> None:
    run = Run.create(tmp_path, "x", "x: 1\n", "x: 1\n", {})
    del run.info["started_at"]
    run.finish("failed")
    assert info(run.path)["status"] == "failed"
    assert info(run.path)["duration_s"] is None


def test_runs_in_the_same_second_never_collide(tmp_path: Path) -> None:
    made = [runs.Run.create(tmp_path, "same", "x: 1\n", "x: 1\n", {}) for _ in range(20)]
    assert len({r.path for r in made}) == 20
