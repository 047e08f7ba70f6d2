"""A sweep's worker: it claims trials (claims.py) and runs each as a `nncli train` (or a
resume of its run folder) in a child process (started as warm.py says), with signals,
--fail-fast, and an event per start and end. Nothing here prints: the CLI renders events.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from nncli.engine.distributed import PLOTS_ENV, RUN_RECORD
from nncli.engine.signals import exit_code, recorded_signals
from nncli.errors import EXIT_INTERRUPTED, EXIT_TERMINATED, RunInterrupted
from nncli.loggers.sweep_prune import TRIAL_ENV
from nncli.runs.files import now
from nncli.runs.record import is_run
from nncli.sweep import warm
from nncli.sweep.bayes import BayesSearch
from nncli.sweep.claims import CLAIM_ENV, Claims
from nncli.sweep.state import (
    DONE,
    ENDED,
    FAILED,
    RUNS,
    TAKEN,
    Sweep,
    Trial,
    metric_value,
    read_trial_run,
    recorded_run,
    settle,
)

POLL_S = 0.05
LOOK_S = 0.5  # how often a worker with a free slot looks for a trial to take
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
    resumed: bool  # it continues the trial's run folder
    stopped: bool = False  # the sweep sent it SIGTERM


def run(
    sweep: Sweep,
    jobs: int = 1,
    fail_fast: bool = False,
    on_event: Callable[[Event], None] = lambda event: None,
    how: warm.Start = "warm",
    nproc: int = 1,
    seeded: bool = True,
) -> None:
    """Work on the sweep until no trial is left: take pending trials (and those of workers
    that died), `jobs` processes at once, each as `how` says (see warm.py); `nproc` > 1
    makes each trial a torchrun job of that many processes.

    Other workers may share the sweep (`nncli sweep --join`): each trial is claimed by
    one (claims.py), and a worker waits, once nothing is left to take, until the others'
    trials have ended, to take over any whose worker dies. A trial that ends other than
    completed is reported as it ends and the others go on (with `fail_fast`, this worker's
    running trials are stopped and it takes no new one). Ctrl-C or SIGTERM stops the
    running trials, which mark themselves interrupted, and raises RunInterrupted once
    sweep.json records them.
    """
    with recorded_signals() as received:
        _loop(sweep, jobs, fail_fast, on_event, received, how, nproc, seeded)
    if received:
        raise RunInterrupted(exit_code(received))


def _loop(
    sweep: Sweep,
    jobs: int,
    fail_fast: bool,
    on_event: Callable[[Event], None],
    received: list[int],
    how: warm.Start,
    nproc: int,
    seeded: bool,
) -> None:
    total = sweep.space.n_trials
    claims = Claims(sweep.folder)
    search = BayesSearch(sweep, seeded) if sweep.space.method == "bayes" else None
    env = _child_env(jobs)
    if nproc > 1:
        how = "process"  # torchrun starts its own processes: nothing to fork warm
    running: list[_Child] = []
    stopping: str | None = None  # why no trial starts any more: "failed" or "interrupted"
    stop_at = 0.0
    killed = False
    unranked = False  # a completed trial without the metric was reported
    next_look = 0.0  # when to look for a trial to take again, after finding none
    looked = False  # this pass looked and found nothing to take
    with sweep.sync():
        sweep.status = "running"
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

            while stopping is None and len(running) < jobs and time.monotonic() >= next_look:
                found = _take(sweep, claims, search, on_event)
                if found is None:
                    next_look, looked = time.monotonic() + LOOK_S, True
                    break
                trial, resumed = found
                child = _start(sweep, trial, env, how, nproc, claims)
                running.append(child)
                sweep.save()
                on_event(Event("start", total, trial, resumed=resumed))

            ended = [c for c in running if c.proc.poll() is not None]
            for child in ended:
                running.remove(child)
                _finish(sweep, child)
                _end(sweep, claims, search, child.trial)
                on_event(Event("end", total, child.trial, log=child.log))
                next_look = 0.0
                trial = child.trial
                if trial.status == "completed" and trial.value is None and not unranked:
                    unranked = True  # say so now, not after the last trial
                    on_event(Event("note", total, text=_unranked_text(trial)))
                if fail_fast and child.trial.status in FAILED and stopping is None:
                    stopping, stop_at = "failed", time.monotonic()
                    if running:
                        on_event(Event("note", total, text=_stopping_text(running, "failed")))
                    _terminate(running)

            if not running and stopping is not None:
                break
            if not running and looked and _all_ended(sweep):
                break  # nothing to take, and nothing left that a worker could give up
            looked = False
            if ended and stopping is None:
                continue  # a slot came free: take the next trial now, not after a wait
            warm.wait_any([c.proc for c in running], POLL_S)
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
            _end(sweep, claims, None, child.trial)
        with sweep.sync():
            sweep.status = "failed"
        raise
    with sweep.sync():
        statuses = [t.status for t in sweep.trials]
        if stopping == "interrupted":
            sweep.status = "interrupted"
        elif all(s in DONE for s in statuses) and len(statuses) >= total:
            sweep.status = "completed"
        elif (all(s in ENDED for s in statuses) and len(statuses) >= total) or stopping == "failed":
            sweep.status = "failed"


def _take(
    sweep: Sweep, claims: Claims, search: BayesSearch | None, on_event: Callable[[Event], None]
) -> tuple[Trial, bool] | None:
    """Claim the next trial to run, under sweep.lock: a pending or interrupted one, or one
    whose worker and process are gone, else (bayes) a new one asked of the study. A
    taken-over trial whose run folder ended meanwhile is recorded, not run. (trial,
    whether its run folder is continued), or None where nothing is left to take now."""
    with sweep.sync():
        for trial in sweep.trials:
            if trial.status not in TAKEN or trial.number in claims.held:
                continue
            if not claims.take(trial.number):
                continue  # another worker runs it
            if trial.status in ("running", "interrupted"):
                settle(sweep, trial)  # where its last attempt left it
                if trial.status in ENDED:
                    claims.release(trial.number)
                    text = f"trial {trial.number}: its run ended {trial.status} while unwatched"
                    on_event(Event("note", sweep.space.n_trials, text=text))
                    continue
            sweep.mine.add(trial.number)
            run = sweep.run_path(trial)
            return trial, run is not None and is_run(run)
        asked = search.ask() if search is not None else None
        if asked is None:
            return None
        if not claims.take(asked.number):  # pragma: no cover - a new number is nobody's
            return None
        sweep.mine.add(asked.number)
        return asked, False


def _end(sweep: Sweep, claims: Claims, search: BayesSearch | None, trial: Trial) -> None:
    """Record a trial's end, then let go of it (its claim last: until sweep.json says how
    it ended, no other worker may take it)."""
    if search is not None:
        search.tell(trial)
    sweep.save()
    claims.release(trial.number)
    sweep.mine.discard(trial.number)


def _all_ended(sweep: Sweep) -> bool:
    """Whether every trial has ended, as sweep.json says now (other workers' too); read
    only (it is replaced atomically), so a waiting worker does not rewrite it."""
    trials = Sweep.load(sweep.folder).trials
    return len(trials) >= sweep.space.n_trials and all(t.status not in TAKEN for t in trials)


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


def _child_env(jobs: int) -> dict[str, str]:
    env = dict(os.environ)
    # several trials each using every core run slower together than one at a time
    if jobs > 1 and "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // jobs))
    return env


def _train_args(sweep: Sweep, trial: Trial, nproc: int) -> list[str]:
    sets = [arg for s in [*sweep.sets, *trial.settings] for arg in ("--set", s)]
    runs_dir = str(sweep.runs_dir.absolute())
    spread = ["--nproc-per-node", str(nproc)] if nproc > 1 else []
    return ["train", str(sweep.file), *sets, "--runs-dir", runs_dir, *spread, "-q"]


def _start(
    sweep: Sweep, trial: Trial, env: dict[str, str], how: warm.Start, nproc: int, claims: Claims
) -> _Child:
    """Start a trial's process: `train` in a new run folder, or `resume` of its folder."""
    run = sweep.run_path(trial)
    resumed = run is not None and is_run(run)
    if run is not None and resumed:
        args = ["resume", str(run.absolute()), "-q"]
        if nproc > 1:  # as train --resume, which can spread it over processes
            args = ["train", "--resume", args[1], "--nproc-per-node", str(nproc), "-q"]
    else:
        trial.run = None
        args = _train_args(sweep, trial, nproc)
        sweep.record_path(trial).unlink(missing_ok=True)  # an earlier attempt's
    # train writes its run folder's path there as it creates the folder
    env = {
        **env,
        RUN_RECORD: str(sweep.record_path(trial).absolute()),
        CLAIM_ENV: str(claims.path(trial.number).absolute()),
    }
    if sweep.space.plots == "best":  # drawn for the best trial alone, when the sweep ends
        env[PLOTS_ENV] = "off"
    if sweep.space.prune is not None and trial.optuna is not None:
        env[TRIAL_ENV] = json.dumps(
            {
                "storage": sweep.storage_where,
                "study": sweep.study,
                "trial": trial.optuna,
                "metric": sweep.space.metric,
                "prune": sweep.space.prune,
            }
        )
    log = sweep.log_path(trial)
    log.parent.mkdir(exist_ok=True)
    with log.open("a", encoding="utf-8") as f:
        f.write(f"$ nncli {shlex.join(args)}\n")
        offset = f.tell()
    proc = warm.start(how, args, log, env, keep=[claims.held[trial.number]])
    trial.status, trial.pid, trial.attempts = "running", proc.pid, trial.attempts + 1
    trial.host = socket.gethostname()
    trial.started_at, trial.ended_at, trial.duration_s = now(), None, None
    trial.exit_code, trial.error = None, None
    return _Child(trial, proc, args, log, offset, time.monotonic(), resumed)


def _finish(sweep: Sweep, child: _Child) -> None:
    """Record how a trial's process ended, from its run folder where it has one."""
    trial, code = child.trial, child.proc.wait()
    lost = warm.exit_lost(child.proc)  # its exit code too: its run folder says how it ended
    with child.log.open("rb") as f:
        f.seek(child.offset)
        output = f.read().decode("utf-8", errors="replace")
    run = sweep.run_path(trial) if child.resumed else None
    if run is None:
        run = recorded_run(sweep, trial)
        trial.run = f"{RUNS}/{run.name}" if run else None
    info = read_trial_run(run) if run is not None else None
    status = info.status if info is not None else None
    if status not in ("completed", "diverged", "pruned"):
        # a resume refused (exit 2) leaves its run as it was: the attempt failed all the same
        known = not lost and code in (EXIT_INTERRUPTED, EXIT_TERMINATED, -2, -15)
        status = "interrupted" if child.stopped or known else "failed"
    trial.status, trial.exit_code, trial.pid = status, None if lost else code, None
    trial.ended_at = now()
    trial.duration_s = round(time.monotonic() - child.started, 1)
    trial.metric, trial.value = metric_value(info, sweep.space.metric)
    if status == "interrupted":
        trial.error = "interrupted; --resume continues it"
    else:
        trial.error = None if status in DONE else _error_text(output, trial.exit_code)


def _error_text(output: str, code: int | None) -> str:
    """Why a trial did not complete, in a line: its error lines, else its last line. `code`
    None: the process's exit code was lost (warm.exit_lost)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(("error ", "internal error ", "diverged "))]
    if errors:
        text = "; ".join(line.removeprefix("error ") for line in errors)
    elif code is None:
        text = "its exit code was lost: the sweep's fork server ended (killed?) while it ran"
    elif code < 0:
        text = f"killed by signal {-code}"
    else:
        text = lines[-1] if lines else f"exit code {code}"
    return text if len(text) <= 500 else text[:497] + "..."
