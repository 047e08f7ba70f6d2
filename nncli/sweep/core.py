"""Sweeps: a search over dotted keys where each trial is a `nncli train` subprocess with its
own run folder, inside a sweep folder whose sweep.json says where every trial stands.

```
sweeps/2026-11-25T10-54-26_circles_3f9c/
  sweep.json  best.yaml  summary.csv  runs/<run>/...  logs/trial-001.log
```
Nothing here prints: starts, ends and notes go to an `on_event` callback the CLI renders.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import itertools
import json
import math
import os
import random
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from types import FrameType
from typing import Any, Literal

from pydantic import ValidationError

from nncli.config import yamlio
from nncli.config.spec import MONITOR_PATTERN, Spec, SweepRange, SweepSpec, load_spec, validate
from nncli.engine.distributed import RUN_RECORD
from nncli.errors import (
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    NncliError,
    Problem,
    RunInterrupted,
    SpecError,
)
from nncli.runs.compare import BEST, BEST_EPOCH, Comparison, compare
from nncli.runs.files import CONFIG, RUN_JSON, json_safe, now, write_atomic
from nncli.runs.folder import direction, new_folder
from nncli.runs.lock import is_locked, locked, process_alive
from nncli.runs.record import is_run
from nncli.tables import Format, render

SWEEPS = "sweeps"  # default parent of sweep folders, beside runs/
SWEEP_JSON = "sweep.json"
BEST_YAML = "best.yaml"
SUMMARY = "summary.csv"
RUNS = "runs"
LOGS = "logs"

MAX_TRIALS = 10_000  # each is validated up front and gets a process and a folder
POLL_S = 0.05
STOP_WAIT_S = 60  # after SIGTERM, how long a trial may take to record itself interrupted
DIGITS = 4  # significant digits of drawn numbers: `lr 0.002346` reads, 0.0023456789 does not

Method = Literal["grid", "random", "bayes"]
METHODS: dict[str, Method] = {"grid": "grid", "random": "random", "bayes": "bayes"}
Kind = Literal["grid", "choice", "range"]
KINDS: tuple[Kind, ...] = ("grid", "choice", "range")
FAILED = ("failed", "diverged")
# diverged trials are not retried: the same seed and settings diverge the same way again
RETRIED = ("pending", "running", "interrupted", "failed")
OPTUNA_MISSING = (
    "bayes search needs Optuna, which is not installed: pip install 'nncli[optuna]' "
    "(grid and random search need nothing more)"
)


def value_text(value: Any) -> str:
    """A value as `--set` reads it back unchanged: `0.001`, `relu`, `[8, 4]`, `true`."""
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool) or value is None or isinstance(value, list | dict):
        text = json.dumps(value)
    else:
        text = repr(value) if isinstance(value, float) else str(value)
    parsed = yamlio.parse_value(text)
    same = parsed == value and type(parsed) is type(value)
    return text if same else json.dumps(value)


# --- the search space ------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    """One searched key: a grid's or choice's values, or a range of numbers."""

    key: str
    kind: Kind
    values: tuple[Any, ...] = ()
    bounds: SweepRange | None = None
    where: str = ""  # where it was given, for messages: FILE:LINE:COL or `--grid ...`
    value_where: tuple[str, ...] = ()  # the same, per value

    def where_of(self, value: Any) -> str:
        for i, v in enumerate(self.values):
            if v == value and type(v) is type(value) and i < len(self.value_where):
                return self.value_where[i]
        return self.where

    def describe(self) -> dict[str, Any]:
        if self.bounds is not None:
            b = self.bounds
            return {"key": self.key, "kind": self.kind, "low": b.low, "high": b.high, "log": b.log}
        return {"key": self.key, "kind": self.kind, "values": list(self.values)}

    @classmethod
    def read(cls, data: dict[str, Any]) -> Param:
        if data["kind"] == "range":
            bounds = SweepRange(low=data["low"], high=data["high"], log=data["log"])
            return cls(data["key"], "range", bounds=bounds)
        return cls(data["key"], data["kind"], values=tuple(data["values"]))


@dataclass(frozen=True)
class Space:
    """What a sweep searches, and how."""

    method: Method
    params: tuple[Param, ...]
    n_trials: int
    seed: int
    metric: str | None  # ranks the trials; None: each run's monitor
    metric_where: str = ""

    def describe(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "n_trials": self.n_trials,
            "seed": self.seed,
            "metric": self.metric,
            "params": [p.describe() for p in self.params],
        }

    @classmethod
    def read(cls, data: dict[str, Any]) -> Space:
        params = tuple(Param.read(p) for p in data["params"])
        return cls(data["method"], params, data["n_trials"], data["seed"], data["metric"])


@dataclass
class Options:
    """The search options of the command line (`--grid lr=0.1,0.01`), merged over the
    file's `sweep:` section key by key."""

    grid: list[str] = field(default_factory=list)
    choice: list[str] = field(default_factory=list)
    range: list[str] = field(default_factory=list)
    method: str | None = None
    n_trials: int | None = None
    seed: int | None = None
    metric: str | None = None

    def given(self) -> list[str]:
        """The flags given, for a refusal (`--resume` keeps the sweep's plan)."""
        flags = [f"--{kind}" for kind in KINDS if getattr(self, kind)]
        named = {"method": "--method", "n_trials": "--trials", "seed": "--seed"}
        return flags + [flag for name, flag in named.items() if getattr(self, name) is not None]


def _cli_entries(options: Options) -> dict[Kind, dict[str, tuple[Any, str]]]:
    """`--grid k=v1,v2` etc. as {kind: {key: (raw entry, the option as given)}}, checked by
    the same model as the file's section."""
    found: dict[Kind, dict[str, tuple[Any, str]]] = {kind: {} for kind in KINDS}
    for kind in KINDS:
        for text in getattr(options, kind):
            flag = f"--{kind} {text}"
            key, sep, raw = text.partition("=")
            if not sep or not key.strip() or not raw.strip():
                form = "KEY=LOW:HIGH or KEY=LOW:HIGH:log" if kind == "range" else "KEY=V1,V2,..."
                raise NncliError(f"{flag}: expected {form}")
            entry: Any = raw
            if kind != "range":  # `8,16` and `[8,4],[16,8]` read as one YAML flow list
                entry = yamlio.parse_value(f"[{raw}]")
                if not isinstance(entry, list):
                    entry = [yamlio.parse_value(v) for v in raw.split(",")]
            try:
                SweepSpec.model_validate({kind: {key.strip(): entry}})
            except ValidationError as exc:
                message = exc.errors(include_url=False)[0]["msg"]
                raise NncliError(f"{flag}: {message}") from None
            found[kind][key.strip()] = (entry, flag)
    return found


def search_space(doc: yamlio.Document, spec: Spec, options: Options) -> Space:
    """The file's `sweep:` section with the command line's options merged over it."""
    section = spec.sweep or SweepSpec()
    cli = _cli_entries(options)
    overridden = {key for entries in cli.values() for key in entries}
    params: list[Param] = []
    for kind in KINDS:
        for key, raw in getattr(section, kind).items():
            if key in overridden:
                continue
            place = ("sweep", kind, key)
            if kind == "range":
                params.append(Param(key, kind, bounds=raw, where=doc.where(place)))
            else:
                wheres = tuple(doc.where((*place, i)) for i in range(len(raw)))
                params.append(Param(key, kind, tuple(raw), None, doc.where(place), wheres))
    for kind in KINDS:
        for key, (raw, flag) in cli[kind].items():
            if kind == "range":
                bounds = SweepSpec.model_validate({"range": {key: raw}}).range[key]
                params.append(Param(key, kind, bounds=bounds, where=flag))
            else:
                params.append(Param(key, kind, tuple(raw), None, flag))
    if not params:
        raise NncliError(
            "nothing to sweep: add a `sweep:` section (grid, choice or range) to the file, "
            "or give --grid KEY=V1,V2, --choice KEY=V1,V2 or --range KEY=LOW:HIGH"
        )

    kinds = {p.kind for p in params}
    chosen = options.method or section.method or ("grid" if kinds == {"grid"} else "random")
    if chosen not in METHODS:
        raise NncliError(f"--method {chosen}: choose {', '.join(METHODS)}")
    method = METHODS[chosen]
    if method == "grid" and kinds != {"grid"}:
        raise NncliError(
            "a grid runs every combination of grid values; choice and range are drawn at "
            "random: use --method random (or bayes), or give every key as a grid"
        )
    if method != "grid" and "grid" in kinds:
        keys = ", ".join(p.key for p in params if p.kind == "grid")
        raise NncliError(
            f"{method} search draws from choice and range; give {keys} as a choice "
            "(--choice KEY=V1,V2 or sweep.choice) instead of a grid"
        )
    n_trials = options.n_trials or section.n_trials
    if method == "grid":
        if n_trials is not None:
            raise NncliError(
                "n_trials is for random and bayes search; a grid runs every combination"
            )
        n_trials = math.prod(len(p.values) for p in params)
    elif n_trials is None:
        raise NncliError(f"{method} search needs a number of trials: --trials N or sweep.n_trials")
    if n_trials > MAX_TRIALS:
        raise NncliError(f"the sweep has {n_trials} trials; more than {MAX_TRIALS} is refused")

    metric, metric_where = section.metric, doc.where(("sweep", "metric"))
    if options.metric is not None:
        if not re.match(MONITOR_PATTERN, options.metric):
            raise NncliError(
                f"--metric {options.metric}: expected SPLIT_METRIC such as val_loss or "
                "val_accuracy (split train, val or test)"
            )
        metric, metric_where = options.metric, f"--metric {options.metric}"
    seed = options.seed if options.seed is not None else section.seed
    return Space(method, tuple(params), n_trials, seed, metric, metric_where)


def trial_params(space: Space) -> list[dict[str, Any]]:
    """Every trial's settings: the grid's combinations, or n_trials draws from the seed.

    Bayes search picks its trials as results come in; what is returned for it are the
    values to check up front: each choice and each range's ends, the other keys at their
    first value.
    """
    params = space.params
    if space.method == "grid":
        combos = itertools.product(*(p.values for p in params))
        return [dict(zip((p.key for p in params), combo, strict=True)) for combo in combos]
    if space.method == "random":
        rng = random.Random(space.seed)
        return [{p.key: _draw(p, rng) for p in params} for _ in range(space.n_trials)]
    candidates = [p.values if p.bounds is None else (p.bounds.low, p.bounds.high) for p in params]
    first = {p.key: c[0] for p, c in zip(params, candidates, strict=True)}
    corners = [first]
    for p, values in zip(params, candidates, strict=True):
        corners += [{**first, p.key: v} for v in values[1:]]
    return corners


def _draw(param: Param, rng: random.Random) -> Any:
    if param.bounds is None:
        return param.values[rng.randrange(len(param.values))]
    b = param.bounds
    if b.log:
        x = math.exp(rng.uniform(math.log(b.low), math.log(b.high)))
    else:
        x = rng.uniform(b.low, b.high)
    return _rounded(x, b)


def _rounded(x: float, b: SweepRange) -> int | float:
    """A drawn number as people write it (4 significant digits), inside its range."""
    value: int | float = round(x) if b.integer else float(f"{x:.{DIGITS}g}")
    return min(max(value, b.low), b.high)


def settings(params: dict[str, Any]) -> list[str]:
    """`key=value` for each setting of a trial, as given to `--set`."""
    return [f"{key}={value_text(value)}" for key, value in params.items()]


# --- checking every trial up front -------------------------------------------------------


@dataclass
class Plan:
    """A checked sweep that has not started: nothing is created until `create`."""

    file: Path
    name: str
    sets: list[str]
    space: Space
    trials: list[dict[str, Any]]  # bayes: empty (its trials are picked as it goes)


def plan(file: Path, sets: Sequence[str], options: Options) -> Plan:
    """Read the experiment file, build the search and check every trial's config, so that
    a bad value in trial 5 is reported before trial 1 runs (SpecError, every problem)."""
    spec = load_spec(file, list(sets))
    doc = yamlio.load(file)
    space = search_space(doc, spec, options)
    if space.method == "bayes":
        _optuna()
    trials = trial_params(space)
    check(doc, list(sets), space, trials)
    assert spec.name is not None  # load_spec fills it
    return Plan(file, spec.name, list(sets), space, [] if space.method == "bayes" else trials)


def check(
    doc: yamlio.Document, sets: list[str], space: Space, trials: list[dict[str, Any]]
) -> None:
    """Validate each trial's config as `nncli train FILE --set ...` would; one SpecError
    with each distinct problem once, naming the first trial that has it."""
    found: dict[tuple[str, str, str, str | None], tuple[Problem, str, int]] = {}
    by_key = {p.key: p for p in space.params}

    def add(problem: Problem, label: str) -> None:
        ident = (problem.where, problem.key, problem.message, problem.hint)
        if ident in found:
            first, first_label, count = found[ident]
            found[ident] = (first, first_label, count + 1)
        else:
            found[ident] = (problem, label, 0)

    for number, params in enumerate(trials, start=1):
        given = settings(params)
        if space.method == "bayes":
            label = f"with {' '.join(given)}"
        else:
            label = f"trial {number} of {len(trials)}: {' '.join(given)}"
        data = copy.deepcopy(doc.data)
        try:
            spec = validate(
                yamlio.Document(doc.source, doc.text, data, doc.positions), sets + given
            )
        except SpecError as exc:
            for problem in exc.problems:
                where = problem.where
                for (key, value), text in zip(params.items(), given, strict=True):
                    if where == f"--set {text}":  # the trial's own setting: where it was given
                        where = by_key[key].where_of(value)
                add(Problem(where, problem.key, problem.message, problem.hint), label)
            continue
        metric = space.metric
        if metric is not None and metric.split("_", 1)[1] not in ("loss", *spec.metric_names):
            message = f"'{metric}' is not logged by this experiment"
            hint = f"add {metric.split('_', 1)[1]} to metrics, or rank by a loss"
            add(Problem(space.metric_where, "sweep.metric", message, hint), label)
    problems = []
    for problem, label, count in found.values():
        more = f"; {count} more trial{'s' if count > 1 else ''} too" if count else ""
        hint = f"{label}{more}" + (f"; {problem.hint}" if problem.hint else "")
        problems.append(Problem(problem.where, problem.key, problem.message, hint))
    if problems:
        raise SpecError(problems)


# --- the sweep folder --------------------------------------------------------------------


@dataclass
class Trial:
    """One trial: its settings, how it stands, and its run folder once it has one."""

    number: int
    params: dict[str, Any]
    status: str = "pending"  # pending, running, completed, failed, diverged, interrupted
    run: str | None = None  # the run folder, relative to the sweep folder
    metric: str | None = None  # the column ranked: the sweep's metric, else the run's monitor
    value: float | None = None  # its best value in the run
    exit_code: int | None = None
    error: str | None = None
    attempts: int = 0
    pid: int | None = None
    started_at: str | None = None
    ended_at: str | None = None
    duration_s: float | None = None

    @property
    def settings(self) -> list[str]:
        return settings(self.params)


@dataclass
class Sweep:
    """A sweep folder and its sweep.json (rewritten atomically whenever a trial starts or ends)."""

    folder: Path
    file: Path  # the experiment file, absolute: relative data paths start at its folder
    file_sha256: str
    name: str
    sets: list[str]
    space: Space
    trials: list[Trial]
    created_at: str
    status: str = "running"
    metric: str | None = None  # the metric the trials were ranked by
    best: dict[str, Any] | None = None

    def save(self) -> None:
        data = {
            "name": self.name,
            "file": str(self.file),
            "file_sha256": self.file_sha256,
            "set": self.sets,
            "status": self.status,
            "created_at": self.created_at,
            "updated_at": now(),
            **self.space.describe(),
            "ranked_by": self.metric,
            "best": self.best,
            "trials": [asdict(t) for t in self.trials],
        }
        write_atomic(self.folder / SWEEP_JSON, json.dumps(json_safe(data), indent=2) + "\n")

    @classmethod
    def load(cls, folder: Path) -> Sweep:
        """A sweep folder as sweep.json describes it; NncliError if it is not one."""
        try:
            data = json.loads((folder / SWEEP_JSON).read_text(encoding="utf-8"))
            known = {f.name for f in fields(Trial)}
            trials = [Trial(**{k: v for k, v in t.items() if k in known}) for t in data["trials"]]
            return cls(
                folder=folder,
                file=Path(data["file"]),
                file_sha256=data["file_sha256"],
                name=data["name"],
                sets=list(data["set"]),
                space=Space.read(data),
                trials=trials,
                created_at=data["created_at"],
                status=data["status"],
                metric=data.get("ranked_by"),
                best=data.get("best"),
            )
        except FileNotFoundError:
            raise NncliError(
                f"{folder} is not a sweep folder: it has no {SWEEP_JSON}"
                if folder.is_dir()
                else f"{folder} does not exist; name a sweep folder (sweeps/<sweep>)"
            ) from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise NncliError(f"{folder / SWEEP_JSON} cannot be read: {exc}") from None

    @property
    def runs_dir(self) -> Path:
        return self.folder / RUNS

    def log_path(self, trial: Trial) -> Path:
        return self.folder / LOGS / f"trial-{trial.number:03d}.log"

    def record_path(self, trial: Trial) -> Path:
        return self.folder / LOGS / f"trial-{trial.number:03d}.run"

    def run_path(self, trial: Trial) -> Path | None:
        return self.folder / trial.run if trial.run else None


def _sha256(file: Path) -> str:
    return hashlib.sha256(file.read_bytes()).hexdigest()


def create(p: Plan, out: Path | None) -> Sweep:
    """Make the sweep folder (`out`, new or empty, or sweeps/<time>_<name>_<suffix>) and
    its sweep.json with every trial pending."""
    if out is not None:
        if (out / SWEEP_JSON).is_file():
            raise NncliError(f"{out} holds a sweep already; continue it with --resume {out}")
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise NncliError(f"{out} already exists and is not empty; choose another --out")
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise NncliError(f"cannot create {out}: {exc.strerror}") from None
        folder = out
    else:
        folder = new_folder(Path(SWEEPS), p.name)
    (folder / RUNS).mkdir()
    (folder / LOGS).mkdir()
    trials = [Trial(n, params) for n, params in enumerate(p.trials, start=1)]
    sweep = Sweep(
        folder,
        p.file.absolute(),
        _sha256(p.file),
        p.name,
        p.sets,
        p.space,
        trials,
        now(),
        metric=p.space.metric,
    )
    sweep.save()
    return sweep


def reopen(folder: Path, file: Path | None) -> Sweep:
    """A sweep to continue: its experiment file unchanged, no trial of it still running."""
    sweep = Sweep.load(folder)
    if file is not None and file.absolute() != sweep.file:
        raise NncliError(f"{folder} sweeps {sweep.file}, not {file}; give no FILE with --resume")
    if not sweep.file.is_file():
        raise NncliError(f"{sweep.file}, the experiment file of {folder}, is gone; restore it")
    if _sha256(sweep.file) != sweep.file_sha256:
        raise NncliError(
            f"{sweep.file} was edited after the sweep started; a resumed sweep runs the same "
            "experiment: undo the edit, or start a new sweep"
        )
    if sweep.space.method == "bayes":
        _optuna()
    for trial in sweep.trials:
        if trial.status == "running" and trial.pid is not None and process_alive(trial.pid):
            raise NncliError(
                f"trial {trial.number} of {folder} is still running (process {trial.pid}), "
                f"left by a sweep that was killed; wait for it to end (or stop it: kill "
                f"{trial.pid}), then --resume again"
            )
        if trial.status in ("running", "interrupted", "failed"):
            _settle(sweep, trial)
    return sweep


def _settle(sweep: Sweep, trial: Trial) -> None:
    """Bring a trial that a stopped sweep left unfinished up to date with its run folder
    (which may have been found, or have finished, since)."""
    if trial.run is None:
        found = _recorded_run(sweep, trial)
        trial.run = f"{RUNS}/{found.name}" if found else None
    if trial.status == "running":  # its process is gone: it did not record how it ended
        trial.status = "interrupted"
    run = sweep.run_path(trial)
    if run is None or not is_run(run):
        trial.run = None
        return
    info = _read_info(run)
    if info.get("status") == "completed":
        trial.status, trial.error = "completed", None
        trial.metric, trial.value = _metric_value(info, sweep.space.metric)


# --- running the trials -------------------------------------------------------------------


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
    proc: subprocess.Popen[bytes]
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
) -> None:
    """Run every trial not done yet, `jobs` processes at once, until all have ended.

    A trial that ends other than completed is reported as it ends and the others go on
    (with `fail_fast`, running trials are stopped and no new one starts). Ctrl-C or
    SIGTERM stops the running trials, which mark themselves interrupted, and raises
    RunInterrupted once sweep.json records them.
    """
    if is_locked(sweep.folder):
        raise NncliError(f"{sweep.folder} is in use by another nncli sweep; wait for it to end")
    with locked(sweep.folder), _signals() as received:
        _loop(sweep, jobs, fail_fast, on_event, received)
    if received:
        raise RunInterrupted(EXIT_TERMINATED if received[0] == signal.SIGTERM else EXIT_INTERRUPTED)


def _loop(
    sweep: Sweep,
    jobs: int,
    fail_fast: bool,
    on_event: Callable[[Event], None],
    received: list[int],
) -> None:
    total = sweep.space.n_trials
    todo = deque(t for t in sweep.trials if t.status in RETRIED)
    search = _Bayes(sweep) if sweep.space.method == "bayes" else None
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
                child = _start(sweep, trial, env)
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


def _start(sweep: Sweep, trial: Trial, env: dict[str, str]) -> _Child:
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
        f.flush()
        offset = f.tell()
        # A session of its own: Ctrl-C in the terminal reaches the sweep alone, which then
        # stops each trial once, with SIGTERM
        proc = subprocess.Popen(
            [sys.executable, "-m", "nncli", *args],
            stdin=subprocess.DEVNULL,
            stdout=f,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
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
        run = _recorded_run(sweep, trial)
        trial.run = f"{RUNS}/{run.name}" if run else None
    info = _read_info(run) if run is not None else {}
    status = info.get("status")
    if status not in ("completed", "diverged"):
        # a resume refused (exit 2) leaves its run as it was: the attempt failed all the same
        stopped = child.stopped or code in (EXIT_INTERRUPTED, EXIT_TERMINATED, -2, -15)
        status = "interrupted" if stopped else "failed"
    trial.status, trial.exit_code, trial.pid = status, code, None
    trial.ended_at = now()
    trial.duration_s = round(time.monotonic() - child.started, 1)
    trial.metric, trial.value = _metric_value(info, sweep.space.metric)
    if status == "interrupted":
        trial.error = "interrupted; --resume continues it"
    else:
        trial.error = None if status == "completed" else _error_text(output, code)


def _recorded_run(sweep: Sweep, trial: Trial) -> Path | None:
    """The run folder the trial's `train` recorded as it created it (so a trial killed
    before it could print its folder is found too)."""
    try:
        path = Path(sweep.record_path(trial).read_text(encoding="utf-8").strip())
    except OSError:
        return None
    return path if path.parent == sweep.runs_dir.absolute() and is_run(path) else None


def _read_info(run: Path) -> dict[str, Any]:
    try:
        info = json.loads((run / RUN_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _metric_value(info: dict[str, Any], metric: str | None) -> tuple[str | None, float | None]:
    """The metric (default: the run's monitor) and its best value, as run.json records."""
    column = metric or info.get("monitor")
    column = column if isinstance(column, str) else None
    best = (info.get("best") or {}).get(column) if column else None
    value = best.get("value") if isinstance(best, dict) else None
    if isinstance(value, int | float) and math.isfinite(value):
        return column, float(value)
    return column, None


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


# --- bayes search through Optuna ----------------------------------------------------------


def _optuna() -> Any:
    try:
        return importlib.import_module("optuna")
    except ImportError:
        raise NncliError(OPTUNA_MISSING) from None


class _Bayes:
    """Asks Optuna's TPE sampler for each new trial and tells it each result; a resumed
    sweep's finished trials are added to the study first."""

    def __init__(self, sweep: Sweep) -> None:
        optuna = self.optuna = _optuna()
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # nothing below the CLI prints
        self.sweep = sweep
        d = optuna.distributions
        self.texts: dict[str, dict[str, Any]] = {}
        self.distributions: dict[str, Any] = {}
        for p in sweep.space.params:
            if p.bounds is None:  # categorical choices must be plain: use the --set texts
                self.texts[p.key] = {value_text(v): v for v in p.values}
                self.distributions[p.key] = d.CategoricalDistribution(list(self.texts[p.key]))
            elif p.bounds.integer:
                self.distributions[p.key] = d.IntDistribution(
                    p.bounds.low, p.bounds.high, log=p.bounds.log
                )
            else:
                self.distributions[p.key] = d.FloatDistribution(
                    p.bounds.low, p.bounds.high, log=p.bounds.log
                )
        goal = direction(sweep.space.metric or "val_loss")
        self.study = optuna.create_study(
            direction="minimize" if goal == "min" else "maximize",
            sampler=optuna.samplers.TPESampler(seed=sweep.space.seed),
        )
        self.asked: dict[int, Any] = {}
        for trial in sweep.trials:
            self._add(trial)

    def more(self) -> bool:
        return len(self.sweep.trials) < self.sweep.space.n_trials

    def ask(self) -> Trial | None:
        if not self.more():
            return None
        asked = self.study.ask(self.distributions)
        params = {}
        for p in self.sweep.space.params:
            raw = asked.params[p.key]
            if p.bounds is None:
                params[p.key] = self.texts[p.key][raw]
            else:
                params[p.key] = _rounded(raw, p.bounds)
        trial = Trial(len(self.sweep.trials) + 1, params)
        self.sweep.trials.append(trial)
        self.asked[trial.number] = asked
        return trial

    def tell(self, trial: Trial) -> None:
        asked = self.asked.pop(trial.number, None)
        if asked is None:
            self._add(trial)
        elif trial.status == "completed" and trial.value is not None:
            self.study.tell(asked, trial.value)
        elif trial.status in FAILED:
            self.study.tell(asked, state=self.optuna.trial.TrialState.FAIL)
        # an interrupted trial is told nothing: a resumed sweep adds it once it completes

    def _add(self, trial: Trial) -> None:
        if trial.status != "completed" or trial.value is None:
            return
        params = {k: value_text(v) if k in self.texts else v for k, v in trial.params.items()}
        self.study.add_trial(
            self.optuna.trial.create_trial(
                params=params, distributions=self.distributions, value=trial.value
            )
        )


# --- the result ---------------------------------------------------------------------------


@dataclass
class Summary:
    """The trials side by side, ranked by the sweep's metric, and the best one."""

    comparison: Comparison | None
    trial_of: dict[str, Trial]  # run folder name -> its trial
    keys: list[str]  # the swept keys, as given
    metric: str | None
    best: Trial | None
    best_value: float | None  # the metric's best value in the best trial's run
    best_file: Path | None
    warnings: list[str]

    def table(self, fmt: Format) -> Any:
        """compare's table, trial first and the settings next, the run folder last."""
        if self.comparison is None:
            return None
        c = self.comparison
        rows = []
        for row in c.text_rows():
            trial = self.trial_of[str(row["run"])]
            given = {k: value_text(v) for k, v in trial.params.items()}
            rows.append({**row, "trial": trial.number, **given})
        metrics = [m + suffix for m in c.metric_columns for suffix in ("", BEST, BEST_EPOCH)]
        columns = ["trial", "status", *self.keys, *metrics, "epochs", "duration_s", "run"]
        return render(rows, columns, fmt, title="trials")


def summarize(sweep: Sweep, metric: str | None = None) -> Summary:
    """Compare the trials' runs by `metric` (default: the sweep's, else the runs' monitor),
    write summary.csv, and copy the best completed trial's config.yaml to best.yaml."""
    warnings: list[str] = []
    with_runs = [t for t in sweep.trials if t.run and is_run(sweep.folder / t.run)]
    trial_of = {Path(str(t.run)).name: t for t in with_runs}
    keys = [p.key for p in sweep.space.params]
    asked, metric = metric, metric or sweep.space.metric
    if metric is None:
        monitors = [_read_info(sweep.folder / str(t.run)).get("monitor") for t in with_runs]
        metric = next((m for m in monitors if isinstance(m, str)), None)
    if not with_runs:
        return Summary(
            None, trial_of, keys, metric, None, None, None, ["no trial made a run folder"]
        )
    paths = [sweep.folder / str(t.run) for t in with_runs]
    try:
        comparison = compare(paths, sort=metric, metrics=[metric] if metric else None)
    except NncliError as exc:
        if asked:  # a mistake in --metric: the ranking and best.yaml stay as they were
            raise NncliError(f"--metric {asked}: {exc}") from None
        warnings.append(f"cannot rank by {metric}: {exc}")
        comparison = compare(paths)
    warnings += comparison.warnings

    best: Trial | None = None
    best_value: float | None = None
    best_file: Path | None = None
    for data in comparison.runs:  # ranked best first; the first completed one wins
        trial = trial_of[data.name]
        found = data.best(metric) if metric else None
        if trial.status == "completed" and found is not None:
            best, best_value = trial, found[0]
            best_file = sweep.folder / BEST_YAML
            header = (
                f"# nncli sweep {sweep.folder.name}: trial {trial.number} of "
                f"{len(sweep.trials)} ranks first by {metric} ({found[0]:.6g}, epoch "
                f"{found[1]}); its run: {trial.run}\n"
            )
            config = (data.path / CONFIG).read_text(encoding="utf-8")
            write_atomic(best_file, header + config)
            sweep.best = {
                "trial": trial.number,
                "run": trial.run,
                "metric": metric,
                "value": found[0],
                "epoch": found[1],
                "params": trial.params,
            }
            break
    if best is None:
        warnings.append("no completed trial has a value to rank; best.yaml is not written")
        sweep.best = None
    sweep.metric = metric
    sweep.save()
    summary = Summary(comparison, trial_of, keys, metric, best, best_value, best_file, warnings)
    write_atomic(sweep.folder / SUMMARY, summary.table(Format.csv) + "\n")
    return summary
