"""Bayes search: Optuna's TPE sampler asked for each new trial and told each result."""

from __future__ import annotations

from typing import Any

from nncli.metrics import direction
from nncli.sweep.space import import_optuna, rounded, value_text
from nncli.sweep.state import FAILED, Sweep, Trial


class BayesSearch:
    """Asks Optuna's TPE sampler for each new trial and tells it each result; a resumed
    sweep's finished trials are added to the study first."""

    def __init__(self, sweep: Sweep) -> None:
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
                params[p.key] = rounded(raw, p.bounds)
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
