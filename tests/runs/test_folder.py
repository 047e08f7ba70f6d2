"""Run folders under stress: processes started in the same second, readers during writes,
two resumes at once, a full disk or unwritable folder, and tampered checkpoints."""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import TINY, interrupted_run
from typer.testing import CliRunner

from nncli.cli.app import app
from nncli.engine.state import verify_checkpoint
from nncli.errors import NncliError
from nncli.runs import compare, listing, record
from nncli.runs import folder as runs
from nncli.runs.files import WriteError
from nncli.runs.folder import STATUSES, Run
from nncli.runs.lock import LOCK, is_locked, locked

# circles as in the issue: small enough that eight processes train it on two cores
QUICK = TINY.replace("epochs: 3", "epochs: 2")
# epochs of 225 batches: a resume that is still training when the second one starts
LONG = """\
name: long
seed: 3
data: {source: moons, n_samples: 3000, noise: 0.2, split: {val: 0.2}}
model:
  layers: [dense: 16, relu, dense: 1, sigmoid]
loss: bce
optimizer: {name: adam, lr: 0.01}
train: {epochs: 60, batch_size: 8, device: cpu}
"""


def nncli(*args: str, **kwargs: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "nncli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,  # type: ignore[call-overload]
    )


def info(folder: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads((folder / "run.json").read_text())
    return data


def files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def dead_pid() -> int:
    """The pid of a process that has exited (the owner of a stale lock)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


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


WRITER = """\
import random, sys, time
from pathlib import Path
from nncli.runs import folder as runs

root, seed, until = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
rng = random.Random(seed)
header = runs.columns(["train", "val"], ["accuracy"])
config = "optimizer: {{lr: {lr}}}\\nmodel: {{layers: [{{type: dense, units: {units}}}]}}\\n"
made = 0
while time.time() < until:
    run = runs.Run.create(
        root, f"w{seed}", "x: 1\\n", config.format(lr=rng.choice([0.1, 0.01]), units=made),
        {"epochs": 6, "epochs_done": 0, "monitor": "val_loss", "n_params": made},
    )
    run.start_metrics(header)
    epoch, resumed = 1, False
    while epoch <= 6:
        run.log_epoch({**{c: rng.random() for c in header}, "epoch": epoch})
        time.sleep(0.005)  # an epoch takes a moment: readers meet runs in every state
        if epoch == 3 and not resumed and rng.random() < 0.5:  # killed, then resumed from 2
            resumed = True
            run._metrics.close()
            run.write_info(status="running", resumed=[{"after_epoch": 2}])
            run.start_metrics(header, keep_epochs=2)
            epoch = 2
        epoch += 1
    run.finish(rng.choice(["completed", "failed", "interrupted"]))
    made += 1
print(made)
"""


def test_compare_and_runs_never_fail_while_runs_are_written(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    root.mkdir()
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    until = time.time() + 4
    writers = [
        subprocess.Popen(
            [sys.executable, str(script), str(root), str(seed), str(until)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for seed in range(2)
    ]
    runner = CliRunner()
    reads = compared = 0
    try:
        while time.time() < until:
            try:
                result = compare.compare([root])
            except NncliError as exc:  # only before the first run.json exists
                assert "no usable run to compare" in str(exc)
                assert not any(record.is_run(p) for p in root.iterdir())
            else:
                compared += 1
                assert result.warnings == []  # no running run reads as unreadable
                json.loads(result.json())
            rows = listing.list_runs(root)
            assert all(row["status"] in STATUSES for row in rows)
            listed = runner.invoke(app, ["runs", str(root), "--format", "json"])
            assert listed.exit_code == 0, listed.output
            reads += 1
    finally:
        made = [int(w.communicate(timeout=60)[0]) for w in writers]
    assert [w.returncode for w in writers] == [0, 0]
    assert sum(made) >= 4 and reads >= 3 and compared >= 2, (made, reads, compared)
    # and the command itself, figures included, over what the writers left
    out = runner.invoke(app, ["compare", str(root), "--out", str(tmp_path / "cmp"), "-m", "loss"])
    assert out.exit_code == 0, out.output


# --- the lock ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_two_resumes_at_once_the_second_is_refused(
    runner: CliRunner, write: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = interrupted_run(runner, write(LONG, "long.yaml"), tmp_path / "runs", monkeypatch)
    # as a scheduler's SIGKILL leaves it: the lock of a process that is gone
    (folder / LOCK).write_text(f"{dead_pid()} flock\n")
    first, second = nncli("resume", str(folder), "-q"), nncli("resume", str(folder), "-q")
    try:
        deadline = time.monotonic() + 120
        while first.poll() is None and second.poll() is None:
            assert time.monotonic() < deadline, "neither resume ended"
            time.sleep(0.05)
        refused, running = (first, second) if first.poll() is not None else (second, first)
        _, stderr = refused.communicate(timeout=60)
        assert refused.returncode == 2, stderr
        assert f"{folder} is in use by process {running.pid} (a train or resume" in stderr
        assert "Traceback" not in stderr
        assert running.poll() is None, "the resume that holds the lock should still train"
        assert is_locked(folder)
    finally:
        for proc in (first, second):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        first.communicate(timeout=120)
        second.communicate(timeout=120)
    assert running.returncode == 143  # SIGTERM: marked interrupted, lock released
    assert info(folder)["status"] == "interrupted"
    assert not (folder / LOCK).exists()
    assert not is_locked(folder)


def test_a_stale_lock_is_taken_by_exactly_one_of_many_at_once(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / LOCK).write_text(f"{dead_pid()} flock\n")
    start = threading.Barrier(12)
    inside, most, refused = [0], [0], []
    guard = threading.Lock()

    def contend() -> None:
        start.wait()
        try:
            with locked(folder):
                with guard:
                    inside[0] += 1
                    most[0] = max(most[0], inside[0])
                time.sleep(1.0)  # long enough that every other thread tries meanwhile
                with guard:
                    inside[0] -= 1
        except NncliError as exc:
            refused.append(str(exc))

    threads = [threading.Thread(target=contend) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most[0] == 1  # never two holders: deleting and re-creating the file allowed that
    assert len(refused) == 11
    assert all("is in use by" in r for r in refused)
    assert not (folder / LOCK).exists()


def test_a_lock_naming_a_reused_pid_is_stale(tmp_path: Path) -> None:
    """The pid lives, but not as an nncli holding the lock (the number was reused)."""
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (tmp_path / LOCK).write_text(f"{sleeper.pid} flock\n")
        assert not is_locked(tmp_path)
        with locked(tmp_path):
            assert (tmp_path / LOCK).read_text() == f"{os.getpid()} flock\n"
            assert is_locked(tmp_path) is False  # our own lock, seen from this process
    finally:
        sleeper.kill()
        sleeper.wait()
    assert not (tmp_path / LOCK).exists()


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


def test_a_disk_full_at_a_checkpoint_keeps_the_previous_one(
    runner: CliRunner, tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_save = torch.save

    def save(obj: dict[str, object], path: Path) -> None:
        if obj["epoch"] == 2:  # the disk fills up half-way through epoch 2's last.pt
            Path(path).write_bytes(b"PK\x03\x04partial")
            raise RuntimeError("[enforce fail at inline_container.cc:672] . file write failed")
        real_save(obj, path)

    monkeypatch.setattr(torch, "save", save)
    result = runner.invoke(app, ["train", str(tiny), "--runs-dir", str(tmp_path / "runs")])
    monkeypatch.undo()
    assert result.exit_code == 2, result.output
    (folder,) = (tmp_path / "runs").iterdir()
    assert result.stderr.strip() == (
        f"error cannot write {folder}/checkpoints/last.pt: [enforce fail at "
        "inline_container.cc:672] . file write failed (is the disk full or the folder not "
        f"writable?); the run is marked failed: {folder}. Its checkpoints are kept as last "
        f"saved; once there is room, continue it with: nncli resume {folder}"
    )
    done = info(folder)
    assert done["status"] == "failed"
    assert str(done["error"]).startswith(f"cannot write {folder}/checkpoints/last.pt")
    last = folder / "checkpoints" / "last.pt"
    verify_checkpoint(last)
    assert torch.load(last, weights_only=True)["epoch"] == 1  # the previous one, whole
    assert not list(folder.rglob(".*.tmp"))
    assert not (folder / LOCK).exists()

    resumed = runner.invoke(app, ["resume", str(folder), "-q"])  # once there is room
    assert resumed.exit_code == 0, resumed.output
    assert info(folder)["status"] == "completed"
    assert [r["epoch"] for r in record.read_metrics(folder)] == [1.0, 2.0, 3.0]


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


# --- tampered checkpoints -------------------------------------------------------------------


@pytest.fixture
def checkpoint(runner: CliRunner, tiny: Path, tmp_path: Path) -> Path:
    result = runner.invoke(app, ["train", str(tiny), "--runs-dir", str(tmp_path / "runs"), "-q"])
    assert result.exit_code == 0, result.output
    return Path(result.stdout.strip()) / "checkpoints" / "last.pt"


def same(a: object, b: object) -> bool:
    """Equal checkpoints: nested dicts, lists, tensors and plain values."""
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def test_flipped_bytes_anywhere_in_a_checkpoint_are_found(checkpoint: Path) -> None:
    verify_checkpoint(checkpoint)
    raw = checkpoint.read_bytes()
    original = torch.load(io.BytesIO(raw), weights_only=True)
    # every 97th byte, one at a time: headers, the pickle, the tensors, the directory
    found = 0
    for at in range(0, len(raw), 97):
        flipped = bytearray(raw)
        flipped[at] ^= 0x10
        checkpoint.write_bytes(bytes(flipped))
        try:
            verify_checkpoint(checkpoint)
        except NncliError as exc:
            assert str(exc).startswith(f"{checkpoint} is damaged")
            found += 1
            continue
        # a byte zip does not checksum (padding, the end record): torch refuses the file,
        # which load_checkpoint reports, or it loads what was saved
        try:
            loaded = torch.load(checkpoint, weights_only=True)
        except RuntimeError:
            continue
        assert same(loaded, original), at
    assert found > len(range(0, len(raw), 97)) * 3 // 4
    for size in (0, 100, len(raw) // 2, len(raw) - 1):
        checkpoint.write_bytes(raw[:size])
        with pytest.raises(NncliError, match=r"is damaged \(not a whole checkpoint"):
            verify_checkpoint(checkpoint)


def test_resume_and_show_refuse_a_checkpoint_with_flipped_bytes(
    runner: CliRunner, checkpoint: Path
) -> None:
    raw = bytearray(checkpoint.read_bytes())
    raw[len(raw) // 2] ^= 0x01  # inside the tensors
    checkpoint.write_bytes(bytes(raw))
    folder = checkpoint.parent.parent
    for args in (["show", str(folder), "--weights"], ["resume", str(folder), "--epochs", "5"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        assert f"{checkpoint} is damaged" in result.stderr


# --- tampered run folders are read, never crash the readers ---------------------------------


def test_tampered_run_json_and_config_are_left_out_not_crashed_on(
    runner: CliRunner, checkpoint: Path, tmp_path: Path
) -> None:
    good = checkpoint.parent.parent
    root = good.parent
    for name, change in {
        "bad_best": lambda d: {**d, "best": 3, "monitor": ["x"]},
        "bad_types": lambda d: {**d, "started_at": {"a": 1}, "epochs_done": "many"},
    }.items():
        copy = root / name
        shutil.copytree(good, copy)
        (copy / "run.json").write_text(json.dumps(change(info(good))))
    bomb = root / "bomb"
    shutil.copytree(good, bomb)
    (bomb / "config.yaml").write_text(
        "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n"
        + "".join(
            f"{n}: &{n} [" + ", ".join([f"*{p}"] * 10) + "]\n"
            for p, n in zip("abcdefg", "bcdefgh", strict=True)
        )
    )
    started = time.perf_counter()
    listed = runner.invoke(app, ["runs", str(root), "--format", "csv"])
    assert listed.exit_code == 0, listed.output
    assert len(listed.stdout.strip().splitlines()) == 5  # header and four runs
    result = compare.compare([root])
    assert time.perf_counter() - started < 10
    assert [r.name for r in result.runs] == sorted([good.name, "bad_best", "bad_types"])
    (warning,) = result.warnings
    assert "bomb (config.yaml nests or repeats too much (aliases?); nncli writes it plain)" in (
        warning
    )


def test_brackets_in_run_json_are_shown_not_read_as_markup(
    runner: CliRunner, checkpoint: Path
) -> None:
    folder = checkpoint.parent.parent
    (folder / "run.json").write_text(json.dumps({**info(folder), "status": "[/x]"}))
    result = runner.invoke(app, ["runs", str(folder.parent)])
    assert result.exit_code == 0, result.output
    assert "[/x]" in result.stdout


def test_a_damaged_run_json_is_one_clear_error_and_is_not_rewritten(
    runner: CliRunner, checkpoint: Path
) -> None:
    folder = checkpoint.parent.parent
    for text, message in {
        json.dumps({**info(folder), "status": "interrupted", "epochs_done": "many"}): (
            'run.json: epochs_done should be a whole number, not "many" '
            "(edited by hand? fix or delete it)"
        ),
        json.dumps({**info(folder), "started_at": "yesterday", "n_params": 1.5}): (
            "run.json: started_at should be a time with its UTC offset (ISO 8601), not "
            '"yesterday"; n_params should be a whole number, not 1.5 (edited by hand? '
            "fix or delete them)"
        ),
        "[1, 2]": "run.json: holds a list, not an object",
        '{"status": ': "run.json: not JSON (Expecting value: line 1 column 12 (char 11))",
    }.items():
        (folder / "run.json").write_text(text)
        for command in ("show", "resume", "export"):
            result = runner.invoke(app, [command, str(folder)])
            assert result.exit_code == 2, result.output
            assert result.stderr == f"error {folder}/{message}\n", command
        assert (folder / "run.json").read_text() == text  # never rewritten
        listed = runner.invoke(app, ["runs", str(folder.parent), "--format", "json"])
        assert listed.exit_code == 0, listed.output


def test_a_run_json_without_a_start_still_finishes(tmp_path: Path) -> None:
    run = Run.create(tmp_path, "x", "x: 1\n", "x: 1\n", {})
    del run.info["started_at"]
    run.finish("failed")
    assert info(run.path)["status"] == "failed"
    assert info(run.path)["duration_s"] is None
