"""A sweep checked before it starts: every trial's config validated up front, so a bad
value in trial 5 is reported before trial 1 runs.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nncli.config import yamlio
from nncli.config.spec import Spec, default_name, validate
from nncli.errors import Problem, SpecError
from nncli.loggers.sweep_prune import LOGGER as PRUNE_LOGGER
from nncli.sweep.space import (
    Options,
    Space,
    import_optuna,
    search_space,
    settings,
    trial_params,
    value_text,
)


@dataclasses.dataclass
class Plan:
    """A checked sweep that has not started: nothing is created until `create`."""

    file: Path
    name: str
    sets: list[str]
    space: Space
    trials: list[dict[str, Any]]  # bayes: empty (its trials are picked as it goes)
    slurm: dict[str, Any] | None = None  # sweep.slurm


def plan(file: Path, sets: Sequence[str], options: Options) -> Plan:
    """Read the experiment file, build the search and check every trial's config, so that
    a bad value in trial 5 is reported before trial 1 runs (SpecError, every problem).

    The file is parsed once; the sweep's own settings and each trial's are validated
    against copies of that one Document.
    """
    doc, spec, space, sets = searched(file, sets, options)
    if space.method == "bayes":
        import_optuna()
    trials = trial_params(space)
    check(doc, sets, space, trials)
    name = spec.name or default_name(file)
    slurm = spec.sweep.slurm.model_dump() if spec.sweep and spec.sweep.slurm else None
    return Plan(file, name, sets, space, [] if space.method == "bayes" else trials, slurm)


def searched(
    file: Path, sets: Sequence[str], options: Options
) -> tuple[yamlio.Document, Spec, Space, list[str]]:
    """The file parsed, its config with `sets`, the search, and the settings every trial
    takes (`sets`, and the pruning logger where trials are pruned); nothing checked of the
    trials (the fork server reads their entries from it: warm.server_imports)."""
    doc = yamlio.load(file)
    spec = validate(_fresh(doc), list(sets))
    space = search_space(doc, spec, options)
    sets = list(sets)
    if space.prune is not None:  # each trial reports its epochs through this logger
        given = [e.model_dump() for e in spec.loggers]
        sets.append(f"loggers={value_text([*given, {'type': PRUNE_LOGGER}])}")
    return doc, spec, space, sets


def _fresh(doc: yamlio.Document) -> yamlio.Document:
    """The parsed file with data of its own: `validate` applies the --set values in place."""
    return dataclasses.replace(doc, data=copy.deepcopy(doc.data))


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
        try:
            spec = validate(_fresh(doc), sets + given)
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
