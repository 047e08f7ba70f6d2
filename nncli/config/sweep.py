"""The `sweep:` section of an experiment file: the keys to search and how (grid, choice,
range), its seed, the metric that ranks the trials, pruning, and the Slurm resources of
its workers. `nncli train` ignores it."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator
from pydantic_core import PydanticCustomError

from nncli.config import yamlio
from nncli.config.fields import SplitMetric
from nncli.errors import SpecError
from nncli.loggers import sweep_prune as _sweep_prune  # noqa: F401  (registers the logger)
from nncli.registry import Params

SWEEP_KEY_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*$"


def _sweep_key(key: Any) -> Any:
    if isinstance(key, str) and not re.match(SWEEP_KEY_PATTERN, key):
        raise PydanticCustomError(
            "sweep_key", "a swept key is dotted, like optimizer.lr or model.layers.0.units"
        )
    return key


SweepKey = Annotated[str, BeforeValidator(_sweep_key)]


SweepValues = Annotated[list[Any], Field(min_length=1)]


def _range_shorthand(value: Any) -> Any:
    """`"1e-4:0.1:log"`, `[1e-4, 0.1]` and `[1e-4, 0.1, log]` -> `{low, high, log}`."""
    if isinstance(value, str):
        low, _, rest = value.partition(":")
        high, _, log = rest.partition(":")
        try:
            value = [yamlio.parse_value(low), yamlio.parse_value(high), *([log] if log else [])]
        except SpecError as exc:  # e.g. a 5000-digit number: reported at the range
            raise PydanticCustomError(
                "range_form", "{reason}", {"reason": exc.problems[0].message}
            ) from None
    if isinstance(value, list):
        if len(value) not in (2, 3) or value[2:] not in ([], ["log"]):
            raise PydanticCustomError("range_form", _RANGE_FORM)
        return {"low": value[0], "high": value[1], "log": len(value) == 3}
    if not isinstance(value, dict):  # e.g. a bare number
        raise PydanticCustomError("range_form", _RANGE_FORM)
    return value


_RANGE_FORM = "a range is a list of low, high and optionally log, or the text 'low:high:log'"


class SweepRange(Params):
    """Numbers from low to high, both included: uniform, or log-uniform with `log`; whole
    numbers when low and high both are."""

    low: int | float
    high: int | float
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> SweepRange:
        if not self.low < self.high:
            raise PydanticCustomError("range_order", "low must be below high")
        if self.log and self.low <= 0:
            raise PydanticCustomError("range_log", "a log range needs low above 0")
        return self

    @property
    def integer(self) -> bool:
        return isinstance(self.low, int) and isinstance(self.high, int)


def _prune_shorthand(value: Any) -> Any:
    """`prune: median` -> `{type: median}`."""
    return {"type": value} if isinstance(value, str) else value


class PruneSpec(Params):
    """Optuna's pruner, told each trial's metric after every epoch: a trial doing worse
    than the others did at the same epoch stops there, with status pruned."""

    type: Literal["median", "hyperband"]
    startup_trials: int = Field(
        default=5, ge=0, description="median: trials that finish before any is pruned"
    )
    warmup_epochs: int = Field(
        default=0, ge=0, description="median: epochs of each trial never pruned"
    )


class SlurmSpec(Params):
    """What `nncli sweep --launcher slurm` asks of Slurm for each worker job (submitit)."""

    workers: int = Field(default=1, gt=0, description="jobs, each `nncli sweep --join`")
    partition: str | None = None
    time: int = Field(default=60, gt=0, description="minutes a job may run")
    gpus_per_node: int | None = Field(default=None, ge=0)
    cpus_per_task: int | None = Field(default=None, gt=0)
    mem_gb: float | None = Field(default=None, gt=0)
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    additional: dict[str, str] = Field(
        default_factory=dict, description="more #SBATCH options, name -> value"
    )


class SweepSpec(Params):
    """What `nncli sweep` searches: every combination of `grid`, or n_trials drawn from
    `choice` and `range` (random, or bayes through Optuna). `nncli train` ignores it."""

    method: Literal["grid", "random", "bayes"] | None = Field(
        default=None, description="default: grid when grid is given, else random"
    )
    grid: dict[SweepKey, SweepValues] = Field(
        default_factory=dict, description="dotted key -> values; a trial per combination"
    )
    choice: dict[SweepKey, SweepValues] = Field(
        default_factory=dict, description="dotted key -> values; each trial picks one"
    )
    range: dict[
        SweepKey,
        Annotated[
            SweepRange,
            BeforeValidator(_range_shorthand, json_schema_input_type=str | list[Any] | SweepRange),
        ],
    ] = Field(
        default_factory=dict,
        description="dotted key -> [low, high] or [low, high, log]; each trial draws one",
    )
    n_trials: int | None = Field(default=None, gt=0, description="trials of random or bayes")
    seed: int = Field(default=0, ge=0, lt=2**32, description="seed of the draws, not of training")
    metric: SplitMetric | None = Field(
        default=None,
        description="split_metric that ranks the trials; default: train.monitor",
    )
    prune: (
        Annotated[
            PruneSpec,
            BeforeValidator(_prune_shorthand, json_schema_input_type=str | PruneSpec),
        ]
        | None
    ) = Field(default=None, description="bayes: median or hyperband; stops poor trials early")
    plots: Literal["best", "all"] = Field(
        default="best",
        description="whose figures are drawn: the best trial's, when the sweep ends (another "
        "run's with `nncli plot RUN`), or every trial's as it ends",
    )
    slurm: SlurmSpec | None = Field(default=None, description="for --launcher slurm")
