"""How a sweep starts its trials' processes. `warm` (the default where the system can
fork): Python's multiprocessing fork server imports torch, nncli and matplotlib once, and
each trial is a fresh child forked from it, so a trial skips the seconds of imports and a
crash or leak in one still cannot touch another. `process`: a new `python -m nncli`
process per trial (as `nncli train` from a shell)."""

from __future__ import annotations

import atexit
import copy
import gc
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from functools import cache
from multiprocessing import connection
from multiprocessing.context import ForkServerContext
from pathlib import Path
from typing import Literal, Protocol

from nncli.sweep.forked import Forked, server_ended

Start = Literal["warm", "process"]
PRELOAD = "nncli.sweep.preload"  # what the fork server imports for every sweep
PRELOAD_ENV = "NNCLI_SWEEP_PRELOAD"  # where the trials come from, for the server (prewarm)
ENTRY_KEYS = ("data", "loggers")  # the settings that name the entries of _entry_imports


class TrialProcess(Protocol):
    """What the sweep needs of a trial's process (subprocess.Popen has it)."""

    @property
    def pid(self) -> int: ...

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def terminate(self) -> None: ...

    def kill(self) -> None: ...


def can_fork() -> bool:
    return "forkserver" in multiprocessing.get_all_start_methods()


def start(
    how: Start, args: Sequence[str], log: Path, env: dict[str, str], keep: Sequence[int] = ()
) -> TrialProcess:
    """`nncli ARGS` in a process of its own session (Ctrl-C in the terminal reaches the
    sweep alone, which then stops each trial once, with SIGTERM), stdin empty, stdout and
    stderr appended to `log`, with the environment `env`; a fresh process inherits the
    descriptors `keep` (the trial's claim; a forked one takes it from `env`)."""
    if how == "warm" and can_fork():
        return _fork(list(args), log, env)
    with log.open("a", encoding="utf-8") as f:
        return subprocess.Popen(
            [sys.executable, "-m", "nncli", *args],
            stdin=subprocess.DEVNULL,
            stdout=f,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            pass_fds=tuple(keep),
        )


def prewarm(
    file: Path | None = None,
    sets: Sequence[str] = (),
    folder: Path | None = None,
    search: dict[str, object] | None = None,
) -> None:
    """Start the fork server now: its imports (seconds) then run beside the sweep's own
    start-up (its imports, checking every trial, making the folder) instead of after it, in
    front of the first trial. Beside preload.py's modules it imports those the trials use
    (`server_imports`): of `file` with `sets` searched as `search` says (a new sweep: the
    fields of space.Options, as the command line gives them), or of the sweep `folder`
    (--resume, --join); the server works them out itself, so that this process starts it
    before its own imports. Where the sweep stops before a trial, the server ends with this
    process."""
    if not can_fork():
        return
    where: dict[str, object] | None = None
    if folder is not None:
        where = {"sweep": str(folder.absolute())}
    elif file is not None:
        where = {"file": str(file.absolute()), "set": list(sets), "search": search or {}}
    # the server inherits this process's environment as it is spawned; one sweep at a time
    # (another thread's would delete the variable under this one's, or give it its own)
    with _preloading:
        os.environ[PRELOAD_ENV] = json.dumps(where)
        try:
            _start_server()
        finally:
            del os.environ[PRELOAD_ENV]


_preloading = threading.Lock()  # PRELOAD_ENV is set (prewarm)


def detach_server() -> None:
    """In the fork server, first: it holds none of the sweep's stdin, stdout or stderr (a
    pipe reading the sweep's output, `nncli sweep ... | tee`, ends when the sweep does, not
    when the server has finished its imports or torch's teardown), and it exits without a
    teardown once the sweep is gone. Each trial writes to its log."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    atexit.register(os._exit, 0)


def server_imports() -> list[str]:
    """In the fork server: the modules the sweep's trials import beyond preload.py's
    (`trial_imports`), from where `prewarm` said the trials come from. None where that
    cannot be read: the sweep's own checks say why."""
    from nncli.errors import NncliError
    from nncli.sweep.plan import searched
    from nncli.sweep.space import Options, settings, trial_params
    from nncli.sweep.state import Sweep

    try:
        where = json.loads(os.environ.get(PRELOAD_ENV, "null"))
        if where is None:
            return []
        if "sweep" in where:
            sweep = Sweep.load(Path(where["sweep"]))
            file, sets, space = sweep.file, sweep.sets, sweep.space
            trials = [t.params for t in sweep.trials]  # bayes: those asked for so far
        else:
            file, sets, trials = Path(where["file"]), where["set"], []
            try:
                _, _, space, sets = searched(file, sets, Options(**where["search"]))
            except NncliError:  # what the file says alone; the sweep's own check says why
                return trial_imports(file, [sets])
        # every grid or random trial; bayes: each choice, the other keys at one value
        trials += trial_params(space)
        entries = {  # what names a registry entry, once each: not lr, seed, ...
            tuple(settings({k: v for k, v in t.items() if k.split(".")[0] in ENTRY_KEYS}))
            for t in trials
        }
        return trial_imports(file, [[*sets, *e] for e in sorted(entries)] or [sets])
    except (NncliError, ValueError, KeyError, TypeError):
        return []


def trial_imports(file: Path, variants: Sequence[Sequence[str]]) -> list[str]:
    """The modules the trials of `file` import beyond the fork server's own, a trial for
    each list of `--set`s in `variants`: those their registry entries name (`Entry.imports`)
    for the data source, the data.augment transforms and the loggers, such as
    sklearn.datasets for `source: digits` (a second or so that each trial would pay again).
    Empty where the file cannot be read: the sweep's own check says why."""
    from nncli.config import yamlio
    from nncli.config.overrides import apply
    from nncli.errors import SpecError

    try:
        values = yamlio.load(file).data
    except SpecError:
        return []
    found: set[str] = set()
    for sets in variants:
        trial = copy.deepcopy(values)
        try:
            for setting in sets:
                apply(trial, setting)
        except SpecError:
            continue
        found |= _entry_imports(trial)
    return sorted(found)


def _entry_imports(values: object) -> set[str]:
    """What the registry entries that a trial's settings `values` name import."""
    from nncli.config.entries import entry_name
    from nncli.data import datasets
    from nncli.data.augment import transforms
    from nncli.loggers.base import loggers

    values = values if isinstance(values, dict) else {}
    data = values.get("data")
    data = data if isinstance(data, dict) else {}
    augment = data.get("augment")
    logged = values.get("loggers")
    written = [
        (datasets, data),
        *((transforms, t) for t in (augment if isinstance(augment, list) else [])),
        *((loggers, entry) for entry in (logged if isinstance(logged, list) else [])),
    ]
    found = [(registry, entry_name(registry, entry)) for registry, entry in written]
    return {m for registry, name in found if name for m in registry.get(name).imports}


def wait_any(procs: Sequence[TrialProcess], timeout: float) -> None:
    """Return when one of `procs` ends, or after `timeout` seconds: a forked trial is
    waited on by its sentinel (the sweep starts the next trial as soon as one ends); where
    any is a fresh process, or a forked one lost its server on a system without pidfd,
    this sleeps."""
    sentinels = [p.sentinel for p in procs if isinstance(p, Forked)]
    if sentinels and len(sentinels) == len(procs) and None not in sentinels:
        connection.wait([s for s in sentinels if s is not None], timeout)
    else:
        time.sleep(timeout)


def exit_lost(proc: TrialProcess) -> bool:
    """Whether `proc` is a forked trial whose exit code was lost with its fork server (its
    poll and wait then say 255, as multiprocessing does): its run folder says how it
    ended."""
    return isinstance(proc, Forked) and proc.lost


def _fork(args: list[str], log: Path, env: dict[str, str]) -> Forked:
    """Fork a trial from the server; where the server dies as it takes the trial (EOFError
    reading the trial's pid, or its socket refused), once more from a fresh one
    (ensure_running starts another where the last has ended)."""
    try:
        return _fork_once(args, log, env)
    except (EOFError, OSError):
        return _fork_once(args, log, env)


def _fork_once(args: list[str], log: Path, env: dict[str, str]) -> Forked:
    _start_server()
    child = _fork_server().Process(
        target=_trial_main, args=(args, str(log), env), name="nncli trial"
    )
    child.start()
    return Forked(child, _server_pid())


def _server_pid() -> int | None:
    """The pid of this process's fork server (multiprocessing keeps it, unpublished)."""
    from multiprocessing import forkserver

    pid = getattr(forkserver._forkserver, "_forkserver_pid", None)
    return pid if isinstance(pid, int) else None


def _start_server() -> None:
    """Start the fork server unless it runs: spawned with Ctrl-C ignored (it inherits that,
    and ignores Ctrl-C anyway once its imports are done). Ctrl-C reaches the terminal's
    whole process group; the sweep stops its trials itself, and the server's imports would
    stop with a traceback. Only around a spawn (at the sweep's start, or where the server
    died mid-sweep): a Ctrl-C in those milliseconds is lost, one later must reach the
    sweep."""
    from multiprocessing import forkserver

    _fork_server()  # its preload is set
    pid = _server_pid()
    spawns = pid is None or server_ended(pid)
    if not spawns or threading.current_thread() is not threading.main_thread():
        forkserver.ensure_running()
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        forkserver.ensure_running()
    finally:
        signal.signal(signal.SIGINT, previous)


@cache
def _fork_server() -> ForkServerContext:
    """The context whose server (started with the first trial, kept for this process's
    life) has imported what preload.py names, frozen."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([PRELOAD])
    return context


def _trial_main(args: list[str], log: str, env: dict[str, str]) -> None:
    """A forked trial: in a session of its own, output to `log`, then `nncli ARGS`."""
    # what the server imported lives as long as the trial: no collection walks it again
    # (which would also copy every page of it into this process)
    gc.freeze()
    atexit.unregister(os._exit)  # the server's way out (detach_server): a trial ends as main says
    # Python's own Ctrl-C handler (the server, spawned with Ctrl-C ignored, hands that on)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.setsid()
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    os.environ.clear()
    os.environ.update(env)
    from nncli.sweep.claims import hold_in_trial

    hold_in_trial()
    threads = env.get("OMP_NUM_THREADS", "")
    if threads.isdigit() and int(threads) > 0:  # torch was imported before it was set
        import torch

        torch.set_num_threads(int(threads))
    sys.argv = ["nncli", *args]
    from nncli.cli.app import main

    main()
