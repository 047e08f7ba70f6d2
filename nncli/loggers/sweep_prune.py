"""The logger through which a sweep prunes its trials: each epoch's metric is reported to
the trial's Optuna study, and a trial its pruner stops ends with status `pruned`.

`nncli sweep` adds `{type: sweep_prune}` to a pruned sweep's trials and names the study in
the trial's environment (NNCLI_SWEEP_TRIAL: its storage may hold a password, which a
run's config.yaml must not). Outside a sweep the entry does nothing. Torch-free.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nncli.errors import NncliError, RunPruned, first_line
from nncli.loggers.base import Checkpoint, Logger, LoggerParams, loggers

if TYPE_CHECKING:
    from nncli.engine.prepare import Prepared
    from nncli.runs.folder import Run

TRIAL_ENV = "NNCLI_SWEEP_TRIAL"
LOGGER = "sweep_prune"


class SweepPruneParams(LoggerParams):
    """No parameters: the sweep says which trial in the environment."""


def open_storage(optuna: Any, where: str) -> Any:
    """Optuna's storage: a database at an RDB URL (`postgresql://...`, `sqlite:///...`),
    else a journal file. A URL that names no database Optuna can open (no such dialect, its
    driver not installed, the server unreachable) is an NncliError at --storage."""
    if "://" not in where:
        journal = optuna.storages.journal
        return optuna.storages.JournalStorage(journal.JournalFileBackend(where))
    try:
        return optuna.storages.RDBStorage(where)
    except Exception as exc:  # SQLAlchemy and the drivers raise many kinds: each the user's
        from nncli.sweep.state import without_password

        raise NncliError(
            f"--storage {without_password(where)} cannot be opened as Optuna's database: {first_line(exc).rstrip('.')}. "
            "Check the URL (dialect://user:password@host:port/database) and that the server "
            "is reachable; a PostgreSQL URL needs its driver (pip install psycopg2-binary), "
            "sqlite:///path.db needs none"
        ) from None


def make_pruner(optuna: Any, prune: Mapping[str, Any] | None) -> Any:
    """The pruner `sweep.prune` names (None: Optuna's NopPruner, nothing is pruned)."""
    if prune is None:
        return optuna.pruners.NopPruner()
    if prune["type"] == "hyperband":
        return optuna.pruners.HyperbandPruner()
    return optuna.pruners.MedianPruner(
        n_startup_trials=prune["startup_trials"], n_warmup_steps=prune["warmup_epochs"]
    )


class SweepPruneLogger(Logger):
    """Reports each epoch's metric to the trial and stops the run when the pruner says."""

    def __init__(self, trial: Mapping[str, Any]) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.ERROR)  # e.g. a resumed epoch reported twice
        study = optuna.load_study(
            study_name=trial["study"],
            storage=open_storage(optuna, trial["storage"]),
            pruner=make_pruner(optuna, trial["prune"]),
        )
        number = trial["trial"]
        found = [t for t in study.get_trials(deepcopy=False) if t.number == number]
        if not found:
            raise ValueError(f"the sweep's study has no trial {number}")
        self.trial = optuna.trial.Trial(study, found[0]._trial_id)
        self.metric: str = trial.get("metric") or ""
        self.epochs = 0

    def start(self, run: Run, p: Prepared, resumed_after: int) -> None:
        self.metric = self.metric or p.monitor
        self.epochs = p.spec.train.epochs

    def epoch(
        self, row: Mapping[str, float], checkpoint: Checkpoint, last: bool, best: bool
    ) -> None:
        value, epoch = row.get(self.metric), int(row["epoch"])
        if value is None or not math.isfinite(value):
            return
        self.trial.report(value, epoch)
        if epoch < self.epochs and self.trial.should_prune():  # a trial done is not pruned
            raise RunPruned(
                f"the sweep's pruner stopped this trial after epoch {epoch}: its "
                f"{self.metric} ({value:.4g}) is worse than the other trials had at that epoch"
            )


@loggers.register(LOGGER, params=SweepPruneParams)
def sweep_prune(params: SweepPruneParams, run_folder: Path) -> Logger:
    """Reports each epoch to the sweep's Optuna trial, whose pruner may stop the run
    (added by nncli sweep; does nothing outside a sweep)."""
    text = os.environ.get(TRIAL_ENV)
    return SweepPruneLogger(json.loads(text)) if text else Logger()
