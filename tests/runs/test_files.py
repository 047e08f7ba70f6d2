"""The files of a run folder written whole: a full disk or a write limit is a clear
error naming the file, and the old file stays."""

from __future__ import annotations

import csv
import os
import resource
import shutil
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from conftest import ASSETS, QUICK, info, nncli

from nncli.runs import files
from nncli.runs import folder as runs
from nncli.runs.files import WriteError
from nncli.runs.folder import Run
from nncli.trained.export import FILES


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


# --- every writer, whole or not at all ----------------------------------------------------


def test_a_file_is_synced_before_its_rename_and_the_folder_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A power cut after the rename finds the new bytes on disk, and the new name too."""
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, Path.replace

    def fsync(fd: int) -> None:
        st = os.fstat(fd)
        events.append(("fsync", "folder" if stat.S_ISDIR(st.st_mode) else f"{st.st_size} bytes"))
        real_fsync(fd)

    def replace(self: Path, target: Path) -> Path:
        events.append(("rename", f"{self.parent == tmp_path} {Path(target).name}"))
        return real_replace(self, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(Path, "replace", replace)
    files.write_atomic(tmp_path / "a.json", "{}\n")
    assert events == [("fsync", "3 bytes"), ("rename", "True a.json"), ("fsync", "folder")]
    assert (tmp_path / "a.json").read_bytes() == b"{}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs of its own (mounting needs root; skipped where it is not permitted)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a 2 MB tmpfs needs root")
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def fill(disk: Path, leave: int = 0) -> None:
    """Take all of `disk` but `leave` bytes with a file of its own."""
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    with (disk / "filler").open("wb") as f:
        os.posix_fallocate(f.fileno(), 0, free - leave)


def contents(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "filler"
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs_dir = tmp_path_factory.mktemp("runs")
    proc = nncli("train", str(ASSETS / "tiny.yaml"), "--runs-dir", str(runs_dir), "-q")
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    return Path(stdout.strip())


# what each command writes first into --out DISK/OUT; compare needs a new folder each time
FULL_DISK = {
    "schema": (["schema", "--out", "{disk}/schema.json"], "schema.json"),
    "compare": (["compare", "{run}", "{run}", "--out", "{disk}/cmp"], "cmp/summary.csv"),
    "plot": (["plot", "{run}", "--out", "{disk}/plots"], "plots/loss.png"),
    "predict": (["predict", "{run}", "{rows}", "--out", "{disk}/pred.csv"], "pred.csv"),
    **{
        f"export {fmt}": (
            ["export", "{run}", "--to", fmt, "--out", "{disk}/export"],
            f"export/{name}",
        )
        for fmt, name in FILES.items()
    },
}


@pytest.mark.slow
@pytest.mark.parametrize("case", FULL_DISK)
def test_every_writer_on_a_full_disk_keeps_the_old_file(
    case: str, trained: Path, disk: Path, tmp_path: Path
) -> None:
    """Exit 2 naming the file, no traceback, and every file on the disk as it was: the old
    one where the command had written it before (compare's --out must be new), no empty
    or temporary file."""
    if case == "export onnx":
        pytest.importorskip("onnxscript")
    rows = tmp_path / "rows.csv"
    rows.write_text("x1,x2\n0.1,0.2\n0.5,-0.5\n", encoding="utf-8")
    template, first = FULL_DISK[case]
    args = [a.format(disk=disk, run=trained, rows=rows) for a in template]
    if case != "compare":
        proc = nncli(*args)
        _, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr
        assert (disk / first).stat().st_size > 0
    before = contents(disk)
    fill(disk)
    proc = nncli(*args)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 2, stderr
    assert stderr == (
        f"error cannot write {disk / first}: No space left on device "
        "(the disk is full; free some space)\n"
    )
    assert contents(disk) == before


@pytest.mark.slow
@pytest.mark.parametrize(
    "leave",
    [
        0,  # refused: no room for the folder's first files
        40_000,  # refused: no room for the space a run sets aside
        60_000,  # log.txt
        100_000,  # a checkpoint
        130_000,
        250_000,  # the figures
    ],
)
def test_training_on_a_full_disk_is_refused_or_marked_failed(disk: Path, leave: int) -> None:
    """However little room is left, `train` exits 2 without a traceback and leaves no run
    folder (too full to start) or one marked failed, never one still `running`."""
    fill(disk, leave)
    proc = nncli("train", str(ASSETS / "tiny.yaml"), "--runs-dir", str(disk / "runs"), "-q")
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 2, stderr
    assert stderr.startswith(f"error cannot write {disk / 'runs'}/"), stderr
    assert "Traceback" not in stderr
    folders = list((disk / "runs").iterdir())
    if folders:
        (folder,) = folders
        assert info(folder)["status"] == "failed", stderr
        assert f"the run is marked failed: {folder}" in stderr
        empty = [p.name for p in folder.rglob("*") if p.is_file() and p.stat().st_size == 0]
        assert set(empty) <= {"log.txt"}  # (appended to, never replaced: empty is not false)
        assert sorted(p.name for p in folder.glob(".*")) == []  # no temporaries, no reserve
    else:  # refused: no room for its first files, or for the space a run sets aside
        assert "the run is marked" not in stderr
    assert ": No space left on device (the disk is full; free some space)" in stderr
