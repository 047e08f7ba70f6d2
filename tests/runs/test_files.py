"""The files of a run folder written whole: a full disk or a write limit is a clear
error naming the file, and the old file stays."""

from __future__ import annotations

import csv
import os
import resource
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import QUICK, info, nncli

from nncli.runs import folder as runs
from nncli.runs.files import WriteError
from nncli.runs.folder import Run


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux's /dev/full")
def test_real_full_disk_errors_name_the_file_and_keep_the_old_one(tmp_path: Path) -> None:
    """/dev/full fails every write with ENOSPC, as a full disk does."""
    run = Run.create(tmp_path, "full", "x: 1\n", "x: 1\n", {"epochs": 1})
    before = (run.path / "run.json").read_text()
    tmp = run.path / f".run.json.{os.getpid()}.tmp"
    tmp.symlink_to("/dev/full")
    with pytest.raises(WriteError) as exc:
        run.write_info(status="completed")
    assert str(exc.value) == (
        f"cannot write {run.path / 'run.json'}: No space left on device "
        "(the disk is full; free some space)"
    )
    assert (run.path / "run.json").read_text() == before
    assert not tmp.exists() and not tmp.is_symlink()  # no debris

    run.start_metrics(runs.columns(["train"], []))
    assert run._metrics is not None
    run._metrics.close()
    run._metrics = Path("/dev/full").open("a", encoding="utf-8", newline="")  # noqa: SIM115
    run._writer = csv.writer(run._metrics)
    with pytest.raises(WriteError, match=r"metrics.csv: No space left on device"):
        run.log_epoch({"epoch": 1, "train_loss": 0.5, "lr": 0.1, "time_s": 1.0})
    run.finish("failed")  # the unflushed row fails again on close; the status is written
    assert info(run.path)["status"] == "failed"


@pytest.mark.slow
def test_a_real_write_limit_fails_the_run_clearly(
    write: Callable[..., Path], tmp_path: Path
) -> None:
    """ulimit -f: checkpoints (~27 kB) fit, the figures (>40 kB) do not."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (40_000, 40_000))

    spec = write(QUICK, "quick.yaml")
    proc = nncli("train", str(spec), "--runs-dir", str(tmp_path / "runs"), "-q", preexec_fn=limit)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 2, stderr
    (folder,) = (tmp_path / "runs").iterdir()
    assert stderr.startswith(f"error cannot write {tmp_path / 'runs'}")
    assert "File too large (the file is larger than this process may write (ulimit -f))" in stderr
    assert f"the run is marked failed: {folder}" in stderr
    assert info(folder)["status"] == "failed"
    assert torch.load(folder / "checkpoints/last.pt", weights_only=True)["epoch"] == 2
