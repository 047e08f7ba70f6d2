"""The lock of a run folder: one train or resume at a time, stale locks taken over
(as the lock of a killed process), even by many at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import info, interrupted_run, nncli
from typer.testing import CliRunner

from nncli.errors import NncliError
from nncli.runs.lock import LOCK, is_locked, locked

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


def dead_pid() -> int:
    """The pid of a process that has exited (the owner of a stale lock)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


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
