"""A sweep's result: its trials compared and ranked by a metric, summary.csv, best.yaml."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nncli.errors import NncliError
from nncli.runs.compare import BEST, BEST_EPOCH, Comparison, compare
from nncli.runs.files import CONFIG, PLOTS, write_atomic
from nncli.runs.record import is_run
from nncli.sweep import warm
from nncli.sweep.space import value_text
from nncli.sweep.state import BEST_YAML, LOGS, SUMMARY, Sweep, Trial, read_trial_run
from nncli.sweep.warm import Start
from nncli.tables import Format, render


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
        infos = [read_trial_run(sweep.folder / str(t.run)) for t in with_runs]
        metric = next((i.monitor for i in infos if i is not None and i.monitor), None)
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


def draw_best(sweep: Sweep, how: Start) -> str | None:
    """With sweep.plots `best`, the trials drew no figures: draw the best trial's (its
    plots/ and report.html, as `nncli plot RUN`) in a trial-like child, unless a sweep
    that went on from here drew them already. A warning where that failed, else None."""
    best = sweep.best
    if sweep.space.plots != "best" or best is None:
        return None
    run = sweep.folder / str(best["run"])
    if any((run / PLOTS).glob("*.png")):
        return None
    log = sweep.folder / LOGS / f"plot-trial-{int(best['trial']):03d}.log"
    log.parent.mkdir(exist_ok=True)
    code = warm.start(how, ["plot", str(run.absolute())], log, dict(os.environ)).wait()
    if code != 0:
        return f"the best trial's figures could not be drawn (exit {code}; see {log})"
    return None


SHOWN = 10  # trial numbers named per status in `unfinished`; the rest are counted


def unfinished(sweep: Sweep) -> str | None:
    """The line that says which trials did not complete, by status: `3 of 5 trials did not
    complete (trial 1 failed; trials 3, 4 interrupted)`; None where all did."""
    left = [t for t in sweep.trials if t.status not in ("completed", "pruned")]
    if not left:
        return None
    by_status: dict[str, list[int]] = {}
    for trial in left:
        by_status.setdefault(trial.status, []).append(trial.number)
    parts = []
    for status, numbers in by_status.items():
        named = ", ".join(str(n) for n in numbers[:SHOWN])
        more = f" and {len(numbers) - SHOWN} more" if len(numbers) > SHOWN else ""
        parts.append(f"trial{'s' if len(numbers) > 1 else ''} {named}{more} {status}")
    return (
        f"{len(left)} of {sweep.space.n_trials} trials did not complete ({'; '.join(parts)}); "
        f"run them again with: nncli sweep --resume {sweep.folder}"
    )
