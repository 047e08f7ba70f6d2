"""A warm sweep whose fork server dies (the OOM killer, `kill -9`) while its trials run: the
trials live on, and the sweep watches them by their pid to their end, recording how their run
folders ended; a trial being started as the server dies is started again on a fresh one."""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing import forkserver
from pathlib import Path

import pytest
from test_sweep import BASE, sweep_json
from test_workers import wait_for

from nncli.sweep import warm
from nncli.sweep.claims import CLAIM_ENV
from nncli.sweep.forked import Forked

SERVER = "from multiprocessing.forkserver import main"  # the fork server's command line


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid`, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:  # ended meanwhile
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _is_trial(pid: int) -> bool:
    """Whether `pid` still runs a trial: a forked process in a session of its own (as warm's
    are), not a zombie (whose command line is empty) that init is about to reap."""
    try:
        return os.getsid(pid) == pid and "forkserver" in _cmdline(pid)
    except ProcessLookupError:
        return False


@contextmanager
def _server_killed(tmp_path: Path, epochs: int) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """A sweep of two trials of `epochs` epochs, two at once, in tmp_path/sweep, whose fork
    server is SIGKILLed while both train; the trials' pids are checked gone once the
    sweep has returned (and killed, where the sweep left them behind)."""
    exp = tmp_path / "exp.yaml"
    exp.write_text(BASE)
    out = tmp_path / "sweep"
    command = [sys.executable, "-m", "nncli", "sweep", str(exp), "--out", str(out), "--jobs", "2"]
    command += ["--grid", "optimizer.lr=0.1,0.05", "--grid", f"train.epochs={epochs}"]
    sweep = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pids: list[int] = []
    try:

        def mid_run() -> bool:
            runs = list((out / "runs").glob("*/metrics.csv")) if (out / "runs").is_dir() else []
            return len(runs) == 2 and all(len(m.read_text().splitlines()) > 5 for m in runs)

        wait_for(mid_run, "two trials in the middle of their epochs")
        servers = [p for p in _children(sweep.pid) if SERVER in _cmdline(p)]
        assert len(servers) == 1, servers
        pids = [t["pid"] for t in sweep_json(out)["trials"]]
        assert all(_is_trial(p) for p in pids)
        os.kill(servers[0], signal.SIGKILL)
        wait_for(lambda: not _cmdline(servers[0]), "the server to die", timeout=10)  # a zombie
        yield sweep, out
        assert sweep.returncode is not None
        # the sweep returned after its trials: none is left training unwatched
        assert not [p for p in pids if _is_trial(p)]
    finally:
        for pid in pids:  # a trial the sweep left behind (the defect): not into later tests
            if _is_trial(pid):
                os.kill(pid, signal.SIGKILL)
        sweep.kill()
        sweep.communicate()


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="finds the server in /proc")
def test_trials_whose_fork_server_is_killed_are_watched_to_their_end(tmp_path: Path) -> None:
    with _server_killed(tmp_path, 700) as (sweep, out):
        _, stderr = sweep.communicate(timeout=300)
        assert sweep.returncode == 0, stderr
    trials = sweep_json(out)["trials"]
    assert [t["status"] for t in trials] == ["completed", "completed"], trials
    assert all(t["value"] is not None and t["error"] is None for t in trials), trials
    assert sweep_json(out)["status"] == "completed"
    for trial in trials:
        info = json.loads((out / trial["run"] / "run.json").read_text())
        assert info["status"] == "completed" and info["epochs_done"] == 700
    assert "exit 255" not in stderr and stderr.count("completed") >= 2, stderr


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="finds the server in /proc")
def test_ctrl_c_stops_trials_whose_fork_server_is_gone(tmp_path: Path) -> None:
    # the sweep signals them itself (multiprocessing no longer does, once it said 255)
    with _server_killed(tmp_path, 20000) as (sweep, out):
        time.sleep(0.5)  # the sweep has seen the server's end (it looks every 50 ms)
        os.kill(sweep.pid, signal.SIGINT)
        # its return code first: its stderr stays open while a trial left behind runs (each
        # holds multiprocessing's resource tracker, which holds the sweep's stderr)
        assert sweep.wait(timeout=120) == 130
        _, stderr = sweep.communicate(timeout=60)
        assert "stopping the running trials (1, 2)" in stderr, stderr
    trials = sweep_json(out)["trials"]
    assert [t["status"] for t in trials] == ["interrupted", "interrupted"], trials
    assert sweep_json(out)["status"] == "interrupted"
    for trial in trials:
        info = json.loads((out / trial["run"] / "run.json").read_text())
        assert info["status"] == "interrupted" and 5 <= info["epochs_done"] < 20000


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """This process's fork server, preloading warm.py alone: started in a fraction of a
    second (not the seconds of the sweep's preload), and stopped after the test, so that a
    later one in this process starts with the sweep's preload again. The test lists the
    trials it starts: one still running after it is killed (the server waits for them)."""
    warm._fork_server()  # sets the sweep's preload, once for the process
    forkserver._forkserver._stop()
    monkeypatch.setattr(forkserver._forkserver, "_preload_modules", ["nncli.sweep.warm"])
    trials: list[int] = []
    yield trials
    for pid in trials:
        if _is_trial(pid):
            os.kill(pid, signal.SIGKILL)
    forkserver._forkserver._stop()


def _server_pid() -> int:
    pid = forkserver._forkserver._forkserver_pid
    assert isinstance(pid, int)
    return pid


def _kill_server() -> int:
    """SIGKILL this process's fork server and wait until it has died (not reaped: that is
    multiprocessing's to do); its pid."""
    pid = _server_pid()
    os.kill(pid, signal.SIGKILL)
    died = os.WEXITED | os.WNOHANG | os.WNOWAIT
    wait_for(lambda: os.waitid(os.P_PID, pid, died) is not None, "the server to die", 10)
    return pid


def test_a_server_that_dies_as_it_takes_a_trial_is_replaced(
    started: list[int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the server dies once it has the request, before it answers with the trial's pid: the
    # sweep used to stop there, "Aborted!" (EOFError), with the trial marked running
    connect, calls, unread = forkserver.connect_to_new_process, [], []

    def dying(fds: list[int]) -> tuple[int, int]:
        calls.append(_server_pid())
        if len(calls) > 1:
            return connect(fds)
        _kill_server()
        answer, answered = os.pipe()
        os.close(answered)  # what the dead server will write: nothing, EOF
        request, requested = os.pipe()
        unread.append(request)
        return answer, requested

    monkeypatch.setattr(forkserver, "connect_to_new_process", dying)
    log = tmp_path / "trial.log"
    proc = warm.start("warm", ["--version"], log, {})
    started.append(proc.pid)
    for fd in unread:
        os.close(fd)
    assert proc.wait(60) == 0 and not warm.exit_lost(proc)
    assert log.read_text() == "nncli 0.1.0\n"
    assert len(calls) == 2 and calls[0] != calls[1]  # a fresh server forked the trial


@pytest.mark.parametrize("pidfd", [True, False], ids=["pidfd", "polled"])
def test_a_trial_whose_server_dies_is_watched_and_stopped_by_its_pid(
    started: list[int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pidfd: bool
) -> None:
    if not pidfd:  # macOS, or a Linux kernel before 5.3

        def missing(pid: int, flags: int = 0) -> int:
            raise OSError(errno.ENOSYS, "Function not implemented")

        monkeypatch.setattr(os, "pidfd_open", missing)
    # the trial blocks as it opens its claim, a FIFO no one writes, until it is stopped
    claim = tmp_path / "claim"
    os.mkfifo(claim)
    proc = warm.start("warm", ["--version"], tmp_path / "trial.log", {CLAIM_ENV: str(claim)})
    started.append(proc.pid)
    assert isinstance(proc, Forked)
    wait_for(lambda: _is_trial(proc.pid), "the trial's own session", timeout=30)
    _kill_server()
    wait_for(lambda: proc.poll() is None and proc.lost, "the trial watched by its pid", 10)
    assert (proc._pidfd is not None) == pidfd
    # waiting on it waits (the dead server's sentinel reads EOF at once, forever)
    began = time.monotonic()
    warm.wait_any([proc], 0.3)
    assert time.monotonic() - began >= 0.25
    assert proc.poll() is None and _is_trial(proc.pid)
    with pytest.raises(subprocess.TimeoutExpired):
        proc.wait(0.1)
    proc.terminate()  # as --fail-fast or the sweep's Ctrl-C does
    assert proc.wait(10) == 255 and warm.exit_lost(proc)
    assert not _is_trial(proc.pid)


def test_a_lost_trial_that_ended_without_its_run_says_its_exit_code_was_lost(
    started: list[int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the OOM killer takes the server, then the trial, before it made its run folder: no
    # exit code is made up (multiprocessing's 255), the error says what is known
    from nncli.cli.sweep import _sweep_event
    from nncli.sweep.execute import Event, _Child, _finish
    from nncli.sweep.plan import plan
    from nncli.sweep.space import Options
    from nncli.sweep.state import create

    file = tmp_path / "exp.yaml"
    file.write_text(BASE)
    sweep = create(plan(file, [], Options(grid=["seed=1,2"])), tmp_path / "sweep")
    trial, log = sweep.trials[0], sweep.log_path(sweep.trials[0])
    claim = tmp_path / "claim"
    os.mkfifo(claim)
    proc = warm.start("warm", ["--version"], log, {CLAIM_ENV: str(claim)})
    started.append(proc.pid)
    wait_for(lambda: _is_trial(proc.pid), "the trial's own session", timeout=30)
    _kill_server()
    wait_for(lambda: proc.poll() is None and warm.exit_lost(proc), "the trial watched", 10)
    proc.kill()
    _finish(sweep, _Child(trial, proc, [], log, 0, time.monotonic(), resumed=False))
    lost = "its exit code was lost: the sweep's fork server ended (killed?) while it ran"
    assert (trial.status, trial.exit_code, trial.error) == ("failed", None, lost)
    _sweep_event(Event("end", 2, trial, log=log))
    shown = capsys.readouterr().err
    assert f"failed  seed=1  {trial.duration_s:.1f}s  {lost}  (log: {log})" in shown, shown


def test_a_trials_own_exit_255_is_kept() -> None:
    # multiprocessing's 255 for a lost server is told from a trial's own: that one has ended
    child = multiprocessing.get_context("fork").Process(target=os._exit, args=(255,))
    child.start()
    proc = Forked(child)
    assert proc.wait(30) == 255 and not warm.exit_lost(proc)


@pytest.mark.parametrize("server", ["dead", "alive"])
def test_a_server_spawned_again_mid_sweep_ignores_ctrl_c_and_a_live_one_lets_it_through(
    monkeypatch: pytest.MonkeyPatch, server: str
) -> None:
    """Ctrl-C reaches the terminal's whole process group: a server spawned to replace a dead
    one mid-sweep must ignore it during its imports (as the first one does), while taking a
    trial from a live server must leave Ctrl-C to the sweep."""
    alive = None
    if server == "dead":
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        while os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
            time.sleep(0.01)  # ended, not reaped: as a killed server stays until ensure_running
    else:
        alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        pid = alive.pid
    monkeypatch.setattr(warm, "_server_pid", lambda: pid)
    monkeypatch.setattr(warm, "_spawned", True, raising=False)  # a server was spawned before
    handlers: list[object] = []
    monkeypatch.setattr(
        forkserver, "ensure_running", lambda: handlers.append(signal.getsignal(signal.SIGINT))
    )
    before = signal.getsignal(signal.SIGINT)
    try:
        warm._start_server()
    finally:
        if alive is None:
            os.waitpid(pid, 0)
        else:
            alive.kill()
            alive.wait()
    assert handlers == [signal.SIG_IGN if server == "dead" else before]
    assert signal.getsignal(signal.SIGINT) == before
