"""The experiment file as Pydantic models, and `load_spec(path, overrides)`.

Torch-free: `nncli validate` and `nncli schema` import this and nothing heavier.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, BeforeValidator, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from nncli import yamlio
from nncli.data import DataParams, datasets
from nncli.errors import Problem, SpecError
from nncli.layers import layers
from nncli.losses import CLASSIFY, LossInfo, losses
from nncli.optim import optimizers
from nncli.registry import Params, Registry, UnknownName, closest

CLASSIFICATION_METRICS = ("accuracy", "precision", "recall", "f1")
REGRESSION_METRICS = ("mae", "rmse", "r2")
Metric = Literal["accuracy", "precision", "recall", "f1", "mae", "rmse", "r2"]
DEVICE_PATTERN = r"^(auto|cpu|mps|cuda(:\d+)?)$"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,79}$"


def _shorthand(registry: Registry[Any]) -> Callable[[Any], Any]:
    """Normalise `name`, `{name: value}` and `{key: name, ...}` into `{key: canonical, ...}`."""
    key = registry.key

    def unknown(name: object) -> PydanticCustomError:
        err = UnknownName(registry.kind, str(name), sorted(registry._aliases))
        return PydanticCustomError(
            "unknown_name", "{reason} ({hint})", {"reason": err.reason, "hint": err.hint}
        )

    def normalise(value: Any) -> Any:
        if isinstance(value, str):
            value = {key: value}
        if not isinstance(value, dict):
            return value  # the union reports the wrong type
        if key in value:
            try:
                return {**value, key: registry.canonical(value[key])}
            except UnknownName:
                raise unknown(value[key]) from None
        if len(value) != 1:
            raise PydanticCustomError(
                "bad_shorthand",
                "a {kind} is a name (`relu`), a one-key map (`dense: 16`) or a map with `{key}`",
                {"kind": registry.kind, "key": key},
            )
        [(name, arg)] = value.items()
        try:
            entry = registry.get(name)
        except UnknownName:
            raise unknown(name) from None
        if isinstance(arg, dict):
            return {key: entry.name, **arg}
        if arg is None:
            return {key: entry.name}
        if entry.positional is None:
            raise PydanticCustomError(
                "no_positional",
                "{kind} '{name}' takes no value; write it as a bare name",
                {"kind": registry.kind, "name": entry.name},
            )
        return {key: entry.name, entry.positional: arg}

    return normalise


def _entry(registry: Registry[Any]) -> Any:
    """The annotation of one registry item in the file: shorthand in, tagged union out."""
    names = sorted(registry._aliases)
    shorthand = Union[Literal[tuple(names)], dict[str, Any], registry.union()]  # type: ignore[valid-type]  # noqa: UP007
    return Annotated[
        registry.union(), BeforeValidator(_shorthand(registry), json_schema_input_type=shorthand)
    ]


if TYPE_CHECKING:  # what type checkers see of the generated unions

    class LayerSpec(Params):
        type: str

    class LossSpec(Params):
        name: str

    OptimizerSpec = LossSpec

    class DataSpec(DataParams):
        source: str

else:
    LayerSpec = _entry(layers)
    LossSpec = _entry(losses)
    OptimizerSpec = _entry(optimizers)
    DataSpec = _entry(datasets)


class ModelSpec(Params):
    """The layer stack, in order; input sizes are inferred from the data."""

    layers: list[LayerSpec] = Field(min_length=1)


class TrainSpec(Params):
    """How to train: epochs, batches, device."""

    epochs: int = Field(default=10, gt=0)
    batch_size: int = Field(default=32, gt=0)
    shuffle: bool = Field(default=True, description="a new sample order every epoch")
    device: str = Field(
        default="auto", pattern=DEVICE_PATTERN, description="auto, cpu, cuda, cuda:N or mps"
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
    train: TrainSpec = TrainSpec()
    metrics: list[Metric] | None = Field(
        default=None, description="default: accuracy or mae, rmse, r2"
    )

    @property
    def loss_info(self) -> LossInfo:
        info: LossInfo = losses.get(self.loss.name).info
        return info

    @model_validator(mode="after")
    def _metrics_fit_the_loss(self) -> Spec:
        classify = self.loss_info.target in CLASSIFY
        if self.metrics is None:
            default = ["accuracy"] if classify else ["mae", "rmse", "r2"]
            object.__setattr__(self, "metrics", default)
            return self
        allowed = CLASSIFICATION_METRICS if classify else REGRESSION_METRICS
        wrong = [m for m in self.metrics if m not in allowed]
        if wrong:
            task = "classification" if classify else "regression"
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


# --- locating errors -------------------------------------------------------------------


def _unwrap(annotation: Any) -> Any:
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation


def _valid_keys(loc: tuple[str | int, ...]) -> list[str]:
    """The field names allowed at `loc` (a pydantic error location), for suggestions."""
    annotation: Any = Spec
    for part in loc:
        annotation = _unwrap(annotation)
        origin = get_origin(annotation)
        if origin in (Union, types.UnionType):
            members = [_unwrap(a) for a in get_args(annotation) if a is not type(None)]
            models = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
            tagged = [m for m in models if any(f.default == part for f in m.model_fields.values())]
            if tagged:
                annotation = tagged[0]
                continue
            annotation = models[0] if len(models) == 1 else None
            if annotation is None:
                return []
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(str(part))
            if field is None:
                return []
            annotation = field.annotation
        elif get_origin(annotation) is list and isinstance(part, int):
            annotation = get_args(annotation)[0]
        else:
            return []
    annotation = _unwrap(annotation)
    if get_origin(annotation) in (Union, types.UnionType):
        members = [_unwrap(a) for a in get_args(annotation)]
        annotation = next(
            (m for m in members if isinstance(m, type) and issubclass(m, BaseModel)), None
        )
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return list(annotation.model_fields)
    return []


_PATTERN_HELP = {
    NAME_PATTERN: "a run name holds letters, digits and _ . + - only (no path separators)",
    DEVICE_PATTERN: "expected auto, cpu, cuda, cuda:N or mps",
}
_NO_INPUT = (
    "missing",
    "extra_forbidden",
    "unknown_name",
    "bad_shorthand",
    "no_positional",
    "metric_task",
)


def _problems(
    exc: ValidationError, doc: yamlio.Document, overridden: dict[yamlio.Key, str]
) -> list[Problem]:
    problems = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        path = _data_path(doc.data, loc)
        if err["type"] == "unknown_name":  # point at the `name:` inside a map, if any
            path = next(
                (k for k in ((*path, t) for t in _TAGS.values()) if k in doc.positions), path
            )
        setting = next((text for key, text in overridden.items() if path[: len(key)] == key), None)
        where = f"--set {setting}" if setting else doc.where(path)
        message, hint = err["msg"], None
        if err["type"] == "extra_forbidden":
            name = str(loc[-1])
            valid = [k for k in _valid_keys(loc[:-1]) if k not in ("type", "name", "source")]
            message = f"unknown key '{name}'"
            near = closest(name, valid)
            hint = (
                f"did you mean '{near}'?"
                if near
                else (f"valid: {', '.join(valid)}" if valid else None)
            )
        elif err["type"] == "missing":
            message = "required key is missing"
        elif err["type"] == "unknown_name":
            message, _, rest = message.partition(" (")
            hint = rest.rstrip(")") or None
        elif err["type"] == "union_tag_not_found":
            message = "say which entry this is"
        elif err["type"] == "string_pattern_mismatch":
            message = _PATTERN_HELP.get(err.get("ctx", {}).get("pattern", ""), message)
        if err["type"] not in _NO_INPUT and isinstance(err["input"], str | int | float):
            message = f"{message}, got {err['input']!r}"
        if message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        key = ".".join(str(p) for p in loc)
        problems.append(Problem(where, key, message, hint))
    return problems


def _data_path(data: Any, loc: tuple[str | int, ...]) -> yamlio.Key:
    """The part of an error location that exists in the file (union tags are skipped)."""
    path: list[str | int] = []
    node = data
    for part in loc:
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if in_dict or in_list:
            node = node[part]
        else:
            continue
        path.append(part)
    return tuple(path)


# --- overrides ---------------------------------------------------------------------------

_TAGS = {"model": layers.key, "loss": losses.key, "optimizer": optimizers.key, "data": datasets.key}


def _apply(data: dict[str, Any], setting: str) -> yamlio.Key:
    """Apply one `dotted.key=value` to the file's values; the key's path is returned."""
    key, sep, raw = setting.partition("=")
    if not sep or not key.strip():
        raise SpecError(
            [Problem(f"--set {setting}", "", "expected KEY=VALUE", "e.g. --set optimizer.lr=0.01")]
        )
    parts: list[str | int] = [int(p) if p.isdigit() else p for p in key.strip().split(".")]
    node: Any = data
    for i, part in enumerate(parts[:-1]):
        child = _child(node, part, setting, parts[: i + 1])
        if child is None:
            child = {}
            node[part] = child
        elif isinstance(child, str) and isinstance(parts[i + 1], str):
            # a bare name gains parameters: `gelu` -> {type: gelu}, `huber` -> {name: huber}
            child = {_TAGS.get(str(parts[0]), "type"): child}
            node[part] = child
        node = child
    last = parts[-1]
    if isinstance(node, list):
        _child(node, last, setting, parts)
    elif isinstance(node, dict) and isinstance(last, str):
        tag = node.get("type")
        if tag is not None and last not in node and len(parts) >= 2 and _is_layer(tag, last):
            last = layers.get(last).positional or last  # {type: dense, units: 16} + .dense=32
    else:
        raise SpecError([Problem(f"--set {setting}", key, "cannot set a key inside a plain value")])
    node[last] = yamlio.parse_value(raw)
    return tuple(parts)


def _is_layer(tag: Any, name: str) -> bool:
    try:
        return layers.canonical(str(tag)) == layers.canonical(name)
    except UnknownName:
        return False


def _child(node: Any, part: str | int, setting: str, path: list[str | int]) -> Any:
    dotted = ".".join(str(p) for p in path)
    if isinstance(node, list):
        if not isinstance(part, int) or not 0 <= part < len(node):
            raise SpecError(
                [
                    Problem(
                        f"--set {setting}",
                        dotted,
                        f"no item {part}: the list has {len(node)} item(s)",
                        "count from 0",
                    )
                ]
            )
        return node[part]
    if isinstance(node, dict):
        return node.get(str(part)) if isinstance(part, int) else node.get(part)
    raise SpecError([Problem(f"--set {setting}", dotted, "cannot set a key inside a plain value")])


# --- loading -----------------------------------------------------------------------------


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
        overridden[_apply(data, setting)] = setting
    try:
        return Spec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(_problems(exc, doc, overridden)) from None


def load_spec(path: Path, overrides: list[str] | tuple[str, ...] = ()) -> Spec:
    """Read, validate and resolve an experiment file; the name defaults to the file's stem."""
    spec = validate(yamlio.load(path), overrides)
    if spec.name is None:
        stem = "".join(c if c.isalnum() or c in "_.+-" else "_" for c in path.stem) or "run"
        spec = spec.model_copy(update={"name": stem})
    return spec


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
    """JSON Schema of the experiment file (shorthand forms included), for editors."""
    return Spec.model_json_schema(mode="validation")


_ = typing  # typing is imported for the annotations pydantic evaluates at runtime
