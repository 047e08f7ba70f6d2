"""Bayes search: Optuna's TPE sampler, asked for each new trial and told each result, its
study kept in Optuna storage (the sweep folder's journal file, or a database) that every
worker of the sweep shares; the pruner of `sweep.prune`."""

from __future__ import annotations

import os
from typing import Any

from nncli.loggers.sweep_prune import make_pruner, open_storage
from nncli.metrics import direction
from nncli.sweep.space import import_optuna, rounded, value_text
from nncli.sweep.state import FAILED, Sweep, Trial


class BayesSearch:
    """The sweep's shared study: asked for new trials (under sweep.lock, so trial numbers
    and the count stay one sequence across workers) and told each result.

    `seeded`: the process that created the sweep draws from the sweep's seed; a joining or
    resuming worker from a seed of its own, or it would ask the same points as the first.
    """

    def __init__(self, sweep: Sweep, seeded: bool = True) -> None:
        optuna = self.optuna = import_optuna()
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
        seed = sweep.space.seed if seeded else (sweep.space.seed + os.getpid()) % 2**32
        with sweep.sync():
            legacy = sweep.study is None  # made before studies were stored: told again below
            if legacy:
                sweep.study = sweep.folder.name
            self.study = optuna.create_study(
                study_name=sweep.study,
                storage=open_storage(optuna, sweep.storage_where),
                direction="minimize" if goal == "min" else "maximize",
                sampler=optuna.samplers.TPESampler(seed=seed),
                pruner=make_pruner(optuna, sweep.space.prune),
                load_if_exists=True,
            )
            if legacy:
                for trial in sweep.trials:
                    self._add(trial)

    def more(self) -> bool:
        return len(self.sweep.trials) < self.sweep.space.n_trials

    def ask(self) -> Trial | None:
        """A new trial, numbered after the last (call under sweep.lock)."""
        if not self.more():
            return None
        asked = self.study.ask(self.distributions)
        params = {}
        for p in self.sweep.space.params:
            raw = asked.params[p.key]
            if p.bounds is None:
                params[p.key] = self.texts[p.key][raw]
            else:
                params[p.key] = rounded(raw, p.bounds)
        trial = Trial(len(self.sweep.trials) + 1, params, optuna=asked.number)
        self.sweep.trials.append(trial)
        return trial

    def tell(self, trial: Trial) -> None:
        """The trial's result, to its study trial; one asked before studies were stored, or
        told already (a failed trial run again), is added as a new finished one."""
        state = self.optuna.trial.TrialState
        if trial.optuna is None or self._finished(trial.optuna):
            self._add(trial)
        elif trial.status == "completed" and trial.value is not None:
            self.study.tell(trial.optuna, trial.value)
        elif trial.status == "pruned":  # its last reported epoch is what it reached
            self.study.tell(trial.optuna, state=state.PRUNED)
        elif trial.status in FAILED or trial.status == "completed":
            self.study.tell(trial.optuna, state=state.FAIL)
        # an interrupted trial is told nothing: whoever resumes it tells its end

    def _finished(self, number: int) -> bool:
        found = [t for t in self.study.get_trials(deepcopy=False) if t.number == number]
        return not found or found[0].state.is_finished()

    def _add(self, trial: Trial) -> None:
        if trial.status != "completed" or trial.value is None:
            return
        params = {k: value_text(v) if k in self.texts else v for k, v in trial.params.items()}
        self.study.add_trial(
            self.optuna.trial.create_trial(
                params=params, distributions=self.distributions, value=trial.value
            )
        )
