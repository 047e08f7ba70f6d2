"""The experiment file as Pydantic models (one per section, registry entries as tagged
unions), and `load_experiment(path, overrides)`: the file parsed once and validated.

Torch-free: `nncli validate` and `nncli schema` import this and nothing heavier.
"""

from __future__ import annotations

import json
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Optional

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

from nncli.config import yamlio
from nncli.config.entries import entry_annotation, name_annotation
from nncli.config.fields import (
    DEVICE_PATTERN,
    MONITOR_PATTERN,
    NAME_PATTERN,
    PATTERN_HELP,
    SplitMetric,
)
from nncli.config.locate import problems
from nncli.config.model import LayerSpec, ModelSpec, rebind, remember
from nncli.config.overrides import TAGS, apply
from nncli.config.sweep import SweepSpec
from nncli.data import DataParams, FileParams, datasets
from nncli.data.augment import rebind_augment, transforms
from nncli.errors import Problem, SpecError
from nncli.layers import layers
from nncli.loggers.base import loggers
from nncli.losses import CLASSIFY, LossInfo, losses
from nncli.metrics import Task as MetricTask
from nncli.metrics import for_task, metrics
from nncli.metrics import info as metric_info
from nncli.optim import optimizers, schedulers
from nncli.registry import Params

__all__ = ["LayerSpec", "ModelSpec", "Spec", "load_experiment", "load_spec", "schema"]

if TYPE_CHECKING:  # what type checkers see of the generated unions

    class LossSpec(Params):
        name: str

    OptimizerSpec = LossSpec
    SchedulerSpec = LossSpec

    class DataSpec(DataParams):
        source: str

    class LoggerSpec(Params):
        type: str

    MetricName = str

else:
    LossSpec = entry_annotation(losses)
    OptimizerSpec = entry_annotation(optimizers)
    SchedulerSpec = entry_annotation(schedulers)
    DataSpec = entry_annotation(datasets)
    LoggerSpec = entry_annotation(loggers)
    MetricName = name_annotation(metrics)


class EarlyStopping(Params):
    """Stop when train.monitor has not improved by min_delta for patience epochs."""

    patience: int = Field(default=5, ge=1, description="epochs without improvement")
    min_delta: float = Field(default=0.0, ge=0, description="smallest change that counts")
    restore_best: bool = Field(default=True, description="end with the best epoch's weights")


class TrainSpec(Params):
    """How to train: epochs, batches, device, and what keeps a run on track."""

    epochs: int = Field(default=10, gt=0)
    batch_size: int = Field(default=32, gt=0)
    shuffle: bool = Field(default=True, description="a new sample order every epoch")
    device: str = Field(
        default="auto", pattern=DEVICE_PATTERN, description="auto, cpu, cuda, cuda:N or mps"
    )
    monitor: SplitMetric | None = Field(
        default=None,
        description="split_metric that picks best.pt, early stopping and plateaus; "
        "default: val_loss, else train_loss (the test split never chooses)",
    )
    mode: Literal["auto", "min", "max"] = Field(
        default="auto", description="whether monitor improves down or up; auto: by its name"
    )
    early_stopping: EarlyStopping | None = None
    checkpoint_every: int = Field(default=1, ge=1, description="epochs between last.pt saves")
    clip_grad_norm: float | None = Field(default=None, gt=0)
    clip_grad_value: float | None = Field(default=None, gt=0)
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        default="fp32", description="bf16/fp16 run the forward pass under autocast"
    )
    compile: bool = Field(default=False, description="torch.compile the model (falls back)")
    accumulate_batches: int = Field(
        default=1, ge=1, description="batches per optimizer step (their gradients averaged)"
    )
    ema_decay: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        description="keep an exponential moving average of the weights (e.g. 0.999), "
        "updated after each optimizer step, to evaluate the held-out splits",
    )


def _default_optimizer() -> OptimizerSpec:
    optimizer: OptimizerSpec = optimizers.get("adam").params()  # type: ignore[assignment]
    return optimizer


class Spec(Params):
    """A whole experiment file."""

    name: str | None = Field(
        default=None, pattern=NAME_PATTERN, description="default: the file's stem"
    )
    seed: int = Field(default=0, ge=0, lt=2**32)
    data: DataSpec
    model: ModelSpec
    loss: LossSpec
    optimizer: OptimizerSpec = Field(default_factory=_default_optimizer)
    scheduler: SchedulerSpec | None = None
    train: TrainSpec = TrainSpec()
    metrics: list[MetricName] | None = Field(
        default=None, description="default: accuracy or mae, rmse, r2 (see nncli list metrics)"
    )
    loggers: list[LoggerSpec] = Field(
        default_factory=list,
        description="where else the run is logged, besides its folder and the console",
    )
    # Left out of config.yaml: a trial's resolved config is that trial alone, trainable as is
    sweep: SweepSpec | None = Field(default=None, exclude=True, description="for nncli sweep")

    @property
    def loss_info(self) -> LossInfo:
        info: LossInfo = losses.get(self.loss.name).info
        return info

    @field_validator("metrics")
    @classmethod
    def _each_metric_once(cls, names: list[str] | None) -> list[str] | None:
        # each metric is a metrics.csv column: one given twice would make two of a name
        for i, name in enumerate(names or []):
            if name in (names or [])[:i]:
                raise PydanticCustomError(
                    "duplicate_metric",
                    "'{name}' is already metrics.{first}; give each metric once",
                    {"i": i, "name": name, "first": (names or []).index(name)},
                )
        return names

    @model_validator(mode="after")
    def _metrics_fit_the_loss(self) -> Spec:
        classify = self.loss_info.target in CLASSIFY
        task: MetricTask = "classification" if classify else "regression"
        if self.metrics is None:
            default = [m for m in for_task(task) if metric_info(m).default]
            object.__setattr__(self, "metrics", default)
        monitor = self.train.monitor
        if monitor is not None and monitor.split("_", 1)[1] not in ("loss", *self.metric_names):
            raise PydanticCustomError(
                "monitor_metric",
                "train.monitor '{monitor}' is not logged; add '{metric}' to metrics or monitor a loss",
                {"monitor": monitor, "metric": monitor.split("_", 1)[1]},
            )
        allowed = for_task(task)
        wrong = [m for m in self.metric_names if m not in allowed]
        if wrong:
            raise PydanticCustomError(
                "metric_task",
                "{wrong} do(es) not apply to loss '{loss}' ({task}); use any of {allowed}",
                {
                    "wrong": ", ".join(wrong),
                    "loss": self.loss.name,
                    "task": task,
                    "allowed": ", ".join(allowed),
                },
            )
        return self

    @property
    def metric_names(self) -> list[str]:
        """The metrics to log besides the loss (defaults filled by validation)."""
        return list(self.metrics or [])


def _refresh() -> None:
    """Rebuild the models' unions after a registration, so that an entry registered at any
    time (by a plugin, or a test) is valid in experiment files and in the schema."""
    item = rebind()
    annotations: dict[tuple[type[Params], str], Any] = {
        (ModelSpec, "layers"): list[item],  # type: ignore[valid-type]
        (Spec, "data"): entry_annotation(datasets),
        (Spec, "loss"): entry_annotation(losses),
        (Spec, "optimizer"): entry_annotation(optimizers),
        (Spec, "scheduler"): Optional[entry_annotation(schedulers)],  # noqa: UP045
        (Spec, "metrics"): Optional[list[name_annotation(metrics)]],  # type: ignore[misc]  # noqa: UP045
        (Spec, "loggers"): list[entry_annotation(loggers)],  # type: ignore[misc]
    }
    for (model, name), annotation in annotations.items():
        # a new field from the annotation (its own metadata: the old union's validators
        # kept beside the new ones ran the union twice, its tag twice in every error key)
        old = model.model_fields[name]
        field = FieldInfo.from_annotation(annotation)
        field.default, field.default_factory = old.default, old.default_factory
        field.description = old.description
        model.model_fields[name] = field
    ModelSpec.model_rebuild(force=True)
    Spec.model_rebuild(force=True)


for _registry in (layers, datasets, losses, optimizers, schedulers, metrics, loggers):
    _registry.on_change(_refresh)


def _refresh_augment() -> None:
    """A transform registered late: every source's data.augment takes it."""
    rebind_augment([DataParams, *(m for e in datasets for m in (e.params, e.args))])
    _refresh()


transforms.on_change(_refresh_augment)


def validate(doc: yamlio.Document, overrides: list[str] | tuple[str, ...] = ()) -> Spec:
    """Validate a parsed file (after applying overrides); every problem in one SpecError."""
    if not isinstance(doc.data, dict):
        raise SpecError(
            [
                Problem(
                    f"{doc.source}:1:1",
                    "",
                    "an experiment file is a map of sections",
                    "start with `data:`, `model:`, `loss:`",
                )
            ]
        )
    data = doc.data
    overridden: dict[yamlio.Key, str] = {}
    for setting in overrides:
        overridden[apply(data, setting)] = setting
    try:
        spec = Spec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(problems(exc, doc, overridden, Spec, PATTERN_HELP)) from None
    remember(spec.model, doc)  # a layer that does not fit the data is named in the file
    return spec


@dataclass(frozen=True)
class Experiment:
    """An experiment file read once: its parsed YAML (text and key positions, for messages
    and spec.yaml), the `--set` settings applied, and the validated Spec."""

    path: Path
    doc: yamlio.Document
    overrides: tuple[str, ...]
    spec: Spec


def default_name(path: Path) -> str:
    """A run's name when the file gives none: the file's stem, in the characters allowed."""
    return "".join(c if c.isalnum() or c in "_.+-" else "_" for c in path.stem) or "run"


def load_experiment(path: Path, overrides: Sequence[str] = ()) -> Experiment:
    """Read, validate and resolve an experiment file; the name defaults to the file's stem.

    Relative data paths (in the file or in --set) are made absolute from the file's folder,
    so the resolved config.yaml in a run folder points at the same files from anywhere.
    """
    doc = yamlio.load(path)
    spec = validate(doc, tuple(overrides))
    if spec.name is None:
        spec = spec.model_copy(update={"name": default_name(path)})
    if isinstance(spec.data, FileParams):
        data = spec.data.with_folder(path.absolute().parent)
        spec = spec.model_copy(update={"data": data})
    return Experiment(path, doc, tuple(overrides), spec)


def load_spec(path: Path, overrides: Sequence[str] = ()) -> Spec:
    """The validated Spec of an experiment file (see load_experiment)."""
    return load_experiment(path, overrides).spec


def resolved(spec: Spec) -> dict[str, Any]:
    """The spec with every default filled, as plain values (what config.yaml holds);
    each entry's name (`type`, `name`, `source`) comes first, as people write it."""
    plain: dict[str, Any] = _tags_first(spec.model_dump(mode="json"))
    return plain


def _tags_first(value: Any) -> Any:
    if isinstance(value, list):
        return [_tags_first(v) for v in value]
    if not isinstance(value, dict):
        return value
    tags = [k for k in ("type", "name", "source") if k in value and isinstance(value[k], str)]
    rest = [k for k in value if k not in tags]
    return {k: _tags_first(value[k]) for k in (*tags, *rest)}


def schema() -> dict[str, Any]:
    """JSON Schema (2020-12) of the experiment file, shorthand forms included, for editors
    and independent validators: it refuses what `nncli validate` refuses by type, range,
    name or unknown key (what needs the data, such as a metric that fits the loss, aside)."""
    made = _strict(Spec.model_json_schema(mode="validation"))
    text = json.dumps(made).replace(
        json.dumps(MONITOR_PATTERN),  # the metric named exactly: `val_lss` is refused
        json.dumps(f"^(train|val|test)_(loss|{'|'.join(metrics.names())})$"),
    )
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **json.loads(text)}


_BOUNDS = {"gt": "exclusiveMinimum", "ge": "minimum", "lt": "exclusiveMaximum", "le": "maximum"}


def _strict(node: Any) -> Any:
    """Pydantic's schema made exact: an entry's tag (`type`, `name`, `source`) is required
    where the entry is written in full, and bounds pydantic leaves as its own `gt`, `ge`,
    `lt`, `le` (on a union) become JSON Schema's keywords."""
    if isinstance(node, list):
        return [_strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties":  # names of fields, not keywords
            out[key] = {str(name): _strict(field) for name, field in value.items()}
        else:
            out[_BOUNDS.get(str(key), str(key))] = _strict(value)
    properties = out.get("properties", {})
    tags = [str(t) for t in set(TAGS.values()) if "const" in properties.get(str(t), {})]
    if tags:
        out["required"] = sorted({*out.get("required", []), *tags})
    return out


_ = typing  # typing is imported for the annotations pydantic evaluates at runtime
