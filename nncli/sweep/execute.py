"""Running a sweep's trials: a `nncli train` (or `resume`) child process per trial (started
as warm.py says), signals, --fail-fast, and an event per start and end. Nothing here
prints: the CLI renders events.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Literal

from nncli.engine.distributed import RUN_RECORD
from nncli.errors import EXIT_INTERRUPTED, EXIT_TERMINATED, NncliError, RunInterrupted
from nncli.runs.files import now
from nncli.runs.lock import is_locked, locked
from nncli.runs.record import is_run
from nncli.sweep import warm
from nncli.sweep.bayes import BayesSearch
from nncli.sweep.state import (
    FAILED,
    RETRIED,
    RUNS,
    Sweep,
    Trial,
    metric_value,
    read_trial_run,
    recorded_run,
)

POLL_S = 0.05
STOP_WAIT_S = 60  # after SIGTERM, how long a trial may take to record itself interrupted


@dataclass(frozen=True)
class Event:
    """What the CLI shows as the sweep goes: a trial started or ended, or a note."""

    kind: Literal["start", "end", "note"]
    total: int
    trial: Trial | None = None
    text: str = ""
    resumed: bool = False  # a start that continues the trial's run folder
    log: Path | None = None


@dataclass
class _Child:
    trial: Trial
    proc: warm.TrialProcess
    args: list[str]
    log: Path
    offset: int  # where this attempt's output starts in the log
    started: float
    stopped: bool = False  # the sweep sent it SIGTERM


def run(
    sweep: Sweep,
    jobs: int = 1,
    fail_fast: bool = False,
    on_event: Callable[[Event], None] = lambda event: None,
    how: warm.Start = "warm",
) -> None:
    """Run every trial not done yet, `jobs` processes at once, until all have ended; `how`
    says how a trial's process starts (see warm.py).

    A trial that ends other than completed is reported as it ends and the others go on
    (with `fail_fast`, running trials are stopped and no new one starts). Ctrl-C or
    SIGTERM stops the running trials, which mark themselves interrupted, and raises
    RunInterrupted once sweep.json records them.
    """
    if is_locked(sweep.folder):
        raise NncliError(f"{sweep.folder} is in use by another nncli sweep; wait for it to end")
    with locked(sweep.folder), _signals() as received:
        _loop(sweep, jobs, fail_fast, on_event, received, how)
    if received:
        raise RunInterrupted(EXIT_TERMINATED if received[0] == signal.SIGTERM else EXIT_INTERRUPTED)


def _loop(
    sweep: Sweep,
    jobs: int,
    fail_fast: bool,
    on_event: Callable[[Event], None],
    received: list[int],
    how: warm.Start,
) -> None:
    total = sweep.space.n_trials
    todo = deque(t for t in sweep.trials if t.status in RETRIED)
    search = BayesSearch(sweep) if sweep.space.method == "bayes" else None
    env = _child_env(jobs)
    running: list[_Child] = []
    stopping: str | None = None  # why no trial starts any more: "failed" or "interrupted"
    stop_at = 0.0
    killed = False
    unranked = False  # a completed trial without the metric was reported
    sweep.status = "running"
    sweep.save()
    try:
        while True:
            if received and stopping != "interrupted":
                stopping, stop_at = "interrupted", time.monotonic()
                if running:
                    on_event(Event("note", total, text=_stopping_text(running, "interrupted")))
                _terminate(running)
            late = stopping is not None and time.monotonic() - stop_at > STOP_WAIT_S
            if (len(received) > 1 or late) and not killed:  # a second Ctrl-C: no more waiting
                killed = True
                for child in running:
                    child.proc.kill()

            while stopping is None and len(running) < jobs:
                trial = todo.popleft() if todo else (search.ask() if search else None)
                if trial is None:
                    break
                child = _start(sweep, trial, env, how)
                running.append(child)
                sweep.save()
                on_event(Event("start", total, trial, resumed=child.args[0] == "resume"))

            for child in [c for c in running if c.proc.poll() is not None]:
                running.remove(child)
                _finish(sweep, child)
                sweep.save()
                on_event(Event("end", total, child.trial, log=child.log))
                if search is not None:
                    search.tell(child.trial)
                trial = child.trial
                if trial.status == "completed" and trial.value is None and not unranked:
                    unranked = True  # say so now, not after the last trial
                    on_event(Event("note", total, text=_unranked_text(trial)))
                if fail_fast and child.trial.status in FAILED and stopping is None:
                    stopping, stop_at = "failed", time.monotonic()
                    if running:
                        on_event(Event("note", total, text=_stopping_text(running, "failed")))
                    _terminate(running)

            more = stopping is None and (todo or (search is not None and search.more()))
            if not running and not more:
                break
            time.sleep(POLL_S)
    except BaseException:
        # a bug or a resource problem here: leave no trial running unrecorded
        _terminate(running)
        for child in running:
            try:
                child.proc.wait(STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                child.proc.kill()
                child.proc.wait()
            _finish(sweep, child)
        sweep.status = "failed"
        sweep.save()
        raise
    statuses = [t.status for t in sweep.trials]
    if stopping == "interrupted":
        sweep.status = "interrupted"
    elif all(s == "completed" for s in statuses) and len(statuses) >= total:
        sweep.status = "completed"
    else:
        sweep.status = "failed"
    sweep.save()


def _unranked_text(trial: Trial) -> str:
    return (
        f"trial {trial.number} logged no {trial.metric} (see its metrics.csv), so the trials "
        "cannot be ranked by it; once the sweep ends, rank them by another with: "
        "nncli sweep --resume SWEEP_DIR --metric NAME"
    )


def _stopping_text(running: list[_Child], why: str) -> str:
    trials = ", ".join(str(c.trial.number) for c in running)
    if why == "failed":
        return f"--fail-fast: stopping the running trials ({trials}); no new trial starts"
    return f"stopping the running trials ({trials}); they keep their finished epochs"


def _terminate(running: list[_Child]) -> None:
    for child in running:
        if not child.stopped and child.proc.poll() is None:
            child.stopped = True
            child.proc.terminate()  # the trial marks its run interrupted and exits


@contextmanager
def _signals() -> Iterator[list[int]]:
    """Record SIGINT and SIGTERM instead of raising, so the loop stops its trials and
    writes sweep.json before it ends."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def note(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    previous = {s: signal.signal(s, note) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _child_env(jobs: int) -> dict[str, str]:
    env = dict(os.environ)
    # several trials each using every core run slower together than one at a time
    if jobs > 1 and "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // jobs))
    return env


def _train_args(sweep: Sweep, trial: Trial) -> list[str]:
    sets = [arg for s in [*sweep.sets, *trial.settings] for arg in ("--set", s)]
    runs_dir = str(sweep.runs_dir.absolute())
    return ["train", str(sweep.file), *sets, "--runs-dir", runs_dir, "-q"]


def _start(sweep: Sweep, trial: Trial, env: dict[str, str], how: warm.Start) -> _Child:
    """Start a trial's process: `train` in a new run folder, or `resume` of its folder."""
    run = sweep.run_path(trial)
    if run is not None and is_run(run):
        args = ["resume", str(run.absolute()), "-q"]
    else:
        trial.run = None
        args = _train_args(sweep, trial)
        sweep.record_path(trial).unlink(missing_ok=True)  # an earlier attempt's
    # train writes its run folder's path there as it creates the folder
    env = {**env, RUN_RECORD: str(sweep.record_path(trial).absolute())}
    log = sweep.log_path(trial)
    log.parent.mkdir(exist_ok=True)
    with log.open("a", encoding="utf-8") as f:
        f.write(f"$ nncli {shlex.join(args)}\n")
        offset = f.tell()
    proc = warm.start(how, args, log, env)
    trial.status, trial.pid, trial.attempts = "running", proc.pid, trial.attempts + 1
    trial.started_at, trial.ended_at, trial.duration_s = now(), None, None
    trial.exit_code, trial.error = None, None
    return _Child(trial, proc, args, log, offset, time.monotonic())


def _finish(sweep: Sweep, child: _Child) -> None:
    """Record how a trial's process ended, from its run folder where it has one."""
    trial, code = child.trial, child.proc.wait()
    with child.log.open("rb") as f:
        f.seek(child.offset)
        output = f.read().decode("utf-8", errors="replace")
    run = sweep.run_path(trial) if child.args[0] == "resume" else None
    if run is None:
        run = recorded_run(sweep, trial)
        trial.run = f"{RUNS}/{run.name}" if run else None
    info = read_trial_run(run) if run is not None else None
    status = info.status if info is not None else None
    if status not in ("completed", "diverged"):
        # a resume refused (exit 2) leaves its run as it was: the attempt failed all the same
        stopped = child.stopped or code in (EXIT_INTERRUPTED, EXIT_TERMINATED, -2, -15)
        status = "interrupted" if stopped else "failed"
    trial.status, trial.exit_code, trial.pid = status, code, None
    trial.ended_at = now()
    trial.duration_s = round(time.monotonic() - child.started, 1)
    trial.metric, trial.value = metric_value(info, sweep.space.metric)
    if status == "interrupted":
        trial.error = "interrupted; --resume continues it"
    else:
        trial.error = None if status == "completed" else _error_text(output, code)


def _error_text(output: str, code: int) -> str:
    """Why a trial did not complete, in a line: its error lines, else its last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(("error ", "internal error ", "diverged "))]
    if errors:
        text = "; ".join(line.removeprefix("error ") for line in errors)
    elif code < 0:
        text = f"killed by signal {-code}"
    else:
        text = lines[-1] if lines else f"exit code {code}"
    return text if len(text) <= 500 else text[:497] + "..."
