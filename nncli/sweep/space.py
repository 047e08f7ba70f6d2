"""What a sweep searches: the swept keys and their values or ranges, from the file's
`sweep:` section and the command line, and each trial's settings drawn from them.
"""

from __future__ import annotations

import importlib
import itertools
import json
import math
import random
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ValidationError

from nncli.config import yamlio
from nncli.config.fields import MONITOR_PATTERN
from nncli.config.spec import Spec
from nncli.config.sweep import SweepRange, SweepSpec
from nncli.errors import NncliError
from nncli.metrics import unknown_metric

MAX_TRIALS = 10_000  # each is validated up front and gets a process and a folder
DIGITS = 4  # significant digits of drawn numbers: `lr 0.002346` reads, 0.0023456789 does not

Method = Literal["grid", "random", "bayes"]
METHODS: dict[str, Method] = {"grid": "grid", "random": "random", "bayes": "bayes"}
ParamKind = Literal["grid", "choice", "range"]
KINDS: tuple[ParamKind, ...] = ("grid", "choice", "range")

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


@dataclass(frozen=True)
class Param:
    """One searched key: a grid's or choice's values, or a range of numbers."""

    key: str
    kind: ParamKind
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
    prune: dict[str, Any] | None = None  # sweep.prune as a dict: type, startup_trials, ...
    plots: str = "all"  # sweep.plots (sweeps made before it drew every trial's)

    def describe(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "n_trials": self.n_trials,
            "seed": self.seed,
            "metric": self.metric,
            "prune": self.prune,
            "plots": self.plots,
            "params": [p.describe() for p in self.params],
        }

    @classmethod
    def read(cls, data: dict[str, Any]) -> Space:
        params = tuple(Param.read(p) for p in data["params"])
        method, n, seed, metric = data["method"], data["n_trials"], data["seed"], data["metric"]
        plots = data.get("plots", "all")
        return cls(method, params, n, seed, metric, prune=data.get("prune"), plots=plots)


@dataclass
class Options:
    """The search options of the command line (`--grid lr=0.1,0.01`), merged over the
    file's `sweep:` section key by key."""

    grid: list[str] = field(default_factory=list)
    choice: list[str] = field(default_factory=list)
    range: list[str] = field(default_factory=list)
    method: Method | None = None
    n_trials: int | None = None
    seed: int | None = None
    metric: str | None = None

    def given(self) -> list[str]:
        """The flags given, for a refusal (`--resume` keeps the sweep's plan)."""
        flags = [f"--{kind}" for kind in KINDS if getattr(self, kind)]
        named = {"method": "--method", "n_trials": "--trials", "seed": "--seed"}
        return flags + [flag for name, flag in named.items() if getattr(self, name) is not None]


def _cli_entries(options: Options) -> dict[ParamKind, dict[str, tuple[Any, str]]]:
    """`--grid k=v1,v2` etc. as {kind: {key: (raw entry, the option as given)}}, checked by
    the same model as the file's section."""
    found: dict[ParamKind, dict[str, tuple[Any, str]]] = {kind: {} for kind in KINDS}
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
    default: Method = "grid" if kinds == {"grid"} else "random"
    method = options.method or section.method or default
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
        unknown = unknown_metric(options.metric)
        if unknown is not None:
            raise NncliError(f"--metric {options.metric}: {unknown}")
        metric, metric_where = options.metric, f"--metric {options.metric}"
    seed = options.seed if options.seed is not None else section.seed
    prune = section.prune.model_dump() if section.prune is not None else None
    if prune is not None and method != "bayes":
        raise NncliError(
            f"{doc.where(('sweep', 'prune'))} sweep.prune: pruning compares trials in Optuna's "
            f"study, which bayes search keeps; use method: bayes, or remove prune"
        )
    return Space(method, tuple(params), n_trials, seed, metric, metric_where, prune, section.plots)


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
    return rounded(x, b)


def rounded(x: float, b: SweepRange) -> int | float:
    """A drawn number as people write it (4 significant digits), inside its range."""
    value: int | float = round(x) if b.integer else float(f"{x:.{DIGITS}g}")
    return min(max(value, b.low), b.high)


def settings(params: dict[str, Any]) -> list[str]:
    """`key=value` for each setting of a trial, as given to `--set`."""
    return [f"{key}={value_text(value)}" for key, value in params.items()]


def import_optuna() -> Any:
    """Optuna, which bayes search needs (an optional extra): NncliError saying how to
    install it where it is missing, checked before a bayes sweep is created or resumed."""
    try:
        return importlib.import_module("optuna")
    except ImportError:
        raise NncliError(OPTUNA_MISSING) from None
