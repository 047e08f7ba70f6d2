"""The sweep folder: sweep.json with where every trial stands, creating and reopening a
sweep, and what a trial's run folder recorded.

Several workers (`nncli sweep --join`, on this machine or another with the same files)
share one sweep: each change to sweep.json is read-merge-write under sweep.lock, each
writer owning the trials it claimed (claims.py).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from nncli.errors import NncliError
from nncli.runs.files import json_safe, now, write_atomic
from nncli.runs.folder import new_folder, new_or_empty
from nncli.runs.record import RunInfo, is_run, read_run
from nncli.sweep.plan import Plan
from nncli.sweep.space import Space, import_optuna, settings

SWEEPS = "sweeps"  # default parent of sweep folders, beside runs/
SWEEP_JSON = "sweep.json"
BEST_YAML = "best.yaml"
SUMMARY = "summary.csv"
RUNS = "runs"
LOGS = "logs"
LOCK = "sweep.lock"  # held for each read-merge-write of sweep.json
JOURNAL = "optuna.journal"  # the bayes study, unless --storage names a database

FAILED = ("failed", "diverged")
DONE = ("completed", "pruned")  # ended as planned: pruned trials are ranked too
ENDED = (*DONE, *FAILED)
TAKEN = ("pending", "running", "interrupted")  # what a worker takes (running: if abandoned)
# diverged trials are not retried: the same seed and settings diverge the same way again
RETRIED = (*TAKEN, "failed")


@dataclass
class Trial:
    """One trial: its settings, how it stands, and its run folder once it has one."""

    number: int
    params: dict[str, Any]
    status: str = "pending"  # pending, running, completed, pruned, failed, diverged, interrupted
    run: str | None = None  # the run folder, relative to the sweep folder
    metric: str | None = None  # the column ranked: the sweep's metric, else the run's monitor
    value: float | None = None  # its best value in the run
    exit_code: int | None = None
    error: str | None = None
    attempts: int = 0
    pid: int | None = None
    host: str | None = None  # of the worker running it
    optuna: int | None = None  # bayes: the trial's number in the Optuna study
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
    study: str | None = None  # bayes: the Optuna study's name in its storage
    storage: str | None = None  # bayes: a database URL (None: the journal file, JOURNAL)
    slurm: dict[str, Any] | None = None  # sweep.slurm, for --launcher slurm
    mine: set[int] = field(default_factory=set)  # the trials this process writes
    _held: bool = False

    @contextmanager
    def sync(self) -> Iterator[None]:
        """Hold sweep.lock: the other workers' changes are read in first (refresh), and
        sweep.json is written with this process's own trials when the block ends."""
        if self._held:
            yield
            return
        try:
            fd = os.open(self.folder / LOCK, os.O_CREAT | os.O_RDWR, 0o644)
        except OSError as exc:
            raise NncliError(f"cannot open {self.folder / LOCK}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # short: other workers hold it to read and write
            self._held = True
            self.refresh()
            yield
            self._write()
        finally:
            self._held = False
            os.close(fd)

    def save(self) -> None:
        with self.sync():
            pass

    def refresh(self) -> None:
        """Take the other workers' trials from sweep.json, keeping this process's own."""
        if not (self.folder / SWEEP_JSON).is_file():
            return
        theirs = Sweep.load(self.folder).trials
        ours = {t.number: t for t in self.trials if t.number in self.mine}
        merged = [ours.pop(t.number, t) for t in theirs]
        self.trials = merged + sorted(ours.values(), key=lambda t: t.number)

    def _write(self) -> None:
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
            "study": self.study,
            "storage": without_password(self.storage),
            "slurm": self.slurm,
            "trials": [asdict(t) for t in self.trials],
        }
        write_atomic(self.folder / SWEEP_JSON, json.dumps(json_safe(data), indent=2) + "\n")

    def use_storage(self, given: str | None) -> None:
        """--storage URL where given; NncliError where sweep.json keeps a URL without its
        password, so the study cannot be reached without it."""
        if given is not None:
            self.storage = given
        elif self.storage is not None and _HIDDEN in self.storage:
            raise NncliError(
                f"{self.folder} keeps its study in {self.storage}; give --storage URL with "
                "the password (sweep.json keeps the URL without it)"
            )

    @property
    def storage_where(self) -> str:
        """Where the Optuna study is: the database URL, or the journal file's path."""
        return self.storage or str((self.folder / JOURNAL).absolute())

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
                study=data.get("study"),
                storage=data.get("storage"),
                slurm=data.get("slurm"),
            )
        except FileNotFoundError:
            raise NncliError(
                f"{folder} is not a sweep folder: it has no {SWEEP_JSON}"
                if folder.is_dir()
                else f"{folder} does not exist; name a sweep folder (sweeps/<sweep>)"
            ) from None
        # (AttributeError: a trial that is no object)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
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


_HIDDEN = ":***@"


def without_password(url: str | None) -> str | None:
    """`postgresql://user:secret@host/db` -> `postgresql://user:***@host/db`."""
    return re.sub(r"^([a-z0-9+.-]+://[^:/@]*):[^@/]*@", rf"\1{_HIDDEN}", url) if url else url


def _sha256(file: Path) -> str:
    return hashlib.sha256(file.read_bytes()).hexdigest()


def create(p: Plan, out: Path | None, storage: str | None = None) -> Sweep:
    """Make the sweep folder (`out`, new or empty, or sweeps/<time>_<name>_<suffix>) and
    its sweep.json with every trial pending; a bayes sweep's study is named after the
    folder, in `storage` (a database URL) or the folder's journal file."""
    if out is not None:
        if (out / SWEEP_JSON).is_file():
            raise NncliError(f"{out} holds a sweep already; continue it with --resume {out}")
        folder = new_or_empty(out)
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
        study=folder.name if p.space.method == "bayes" else None,
        storage=storage,
        slurm=p.slurm,
    )
    sweep.save()
    return sweep


def reopen(folder: Path, file: Path | None, retry: bool = True) -> Sweep:
    """A sweep to continue or join: its experiment file unchanged. With `retry` (--resume)
    its failed trials are run again (its workers do not retry them on their own)."""
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
        import_optuna()
    if retry:
        with sweep.sync():
            for trial in sweep.trials:
                if trial.status == "failed":
                    trial.status = "pending"
    return sweep


def settle(sweep: Sweep, trial: Trial) -> None:
    """Bring a trial that a stopped worker left unfinished up to date with its run folder
    (which may have been found, or have ended, since)."""
    if trial.run is None:
        found = recorded_run(sweep, trial)
        trial.run = f"{RUNS}/{found.name}" if found else None
    if trial.status == "running":  # its process is gone: it did not record how it ended
        trial.status = "interrupted"
    run = sweep.run_path(trial)
    if run is None or not is_run(run):
        trial.run = None
        return
    info = read_trial_run(run)
    if info is not None and info.status in ENDED and info.status != "failed":
        trial.status, trial.error = info.status, None
        trial.metric, trial.value = metric_value(info, sweep.space.metric)


def recorded_run(sweep: Sweep, trial: Trial) -> Path | None:
    """The run folder the trial's `train` recorded as it created it (so a trial killed
    before it could print its folder is found too)."""
    try:
        path = Path(sweep.record_path(trial).read_text(encoding="utf-8").strip())
    except OSError:
        return None
    return path if path.parent == sweep.runs_dir.absolute() and is_run(path) else None


def read_trial_run(run: Path) -> RunInfo | None:
    """A trial's run.json, or None where it is missing or unreadable (a trial that failed
    before its run began); read leniently, a damaged field as missing."""
    try:
        return read_run(run, strict=False)
    except NncliError:
        return None


def metric_value(info: RunInfo | None, metric: str | None) -> tuple[str | None, float | None]:
    """The metric (default: the run's monitor) and its best value, as run.json records."""
    column = metric or (info.monitor if info is not None else None)
    best = info.best.get(column) if info is not None and info.best and column else None
    if best is not None and math.isfinite(best.value):
        return column, float(best.value)
    return column, None
