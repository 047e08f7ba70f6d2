"""Data sources: a registry of entries that each produce a Dataset, seeded splits, and the
preprocessing fitted on the train split (`prepare`)."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, Field, model_validator

from nncli.data.preprocess import Feature, Fill, Kind, Preprocessing
from nncli.errors import NncliError
from nncli.registry import Params, Registry

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

__all__ = ["Feature", "Fill", "Kind", "Preprocessing"]

SPLITS = ("train", "val", "test")
LossTarget = Literal["index", "binary", "value"]


class Split(Params):
    """Fractions held out for validation and testing; the rest trains."""

    val: float = Field(default=0.0, ge=0.0, lt=1.0)
    test: float = Field(default=0.2, ge=0.0, lt=1.0)
    stratify: bool = Field(default=True, description="keep class proportions (classification)")

    @model_validator(mode="after")
    def _leave_some_for_training(self) -> Split:
        if self.val + self.test >= 1.0:
            raise ValueError(f"val + test is {self.val + self.test:g}; it must be below 1")
        return self


class DataParams(Params):
    """Parameters every source shares."""

    split: Split = Split()


def _fraction(value: Any) -> Any:
    """`1/255` in a YAML file is a string; read it as the number it says."""
    if isinstance(value, str) and value.count("/") == 1:
        top, _, bottom = value.partition("/")
        try:
            result = float(top) / float(bottom)
        except (ValueError, ZeroDivisionError):
            return value
        return result if math.isfinite(result) else value
    return value


Scale = Annotated[float, BeforeValidator(_fraction, json_schema_input_type=float | str)]
Shape = Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=1, max_length=4)]


class ArrayParams(DataParams):
    """Sources of feature arrays: reshape, scale and standardise options."""

    shape: Shape | None = Field(
        default=None, description="each sample's shape, e.g. [1, 28, 28] for conv layers"
    )
    scale: Scale | None = Field(default=None, gt=0, description="multiply inputs (e.g. 1/255)")
    standardize: bool = Field(
        default=True, description="zero mean, unit variance per feature (train split stats)"
    )


class FileParams(ArrayParams):
    """Sources read from files; relative paths are from the experiment file's folder."""

    path_fields: ClassVar[tuple[str, ...]] = ()
    held_out_files: ClassVar[dict[str, str]] = {}  # split -> the field whose file gives it

    def with_folder(self, folder: Path) -> FileParams:
        """These parameters with every relative path made absolute from `folder`."""
        update = {}
        for name in self.path_fields:
            value = getattr(self, name)
            if value is not None:
                path = Path(value).expanduser()
                update[name] = os.path.normpath(path if path.is_absolute() else folder / path)
        return self.model_copy(update=update)

    @model_validator(mode="after")
    def _files_replace_fractions(self) -> FileParams:
        # a split given by a file replaces its fraction; both at once is a contradiction
        update = {}
        for split_name, field_name in self.held_out_files.items():
            if getattr(self, field_name) is None:
                continue
            if getattr(self.split, split_name) > 0 and split_name in self.split.model_fields_set:
                raise ValueError(
                    f"split.{split_name} and {field_name} both give the {split_name} split; "
                    "remove one"
                )
            update[split_name] = 0.0
        if update:
            object.__setattr__(self, "split", self.split.model_copy(update=update))
        return self


def task_field() -> Any:
    return Field(
        default=None,
        description="default: follows the loss (mse/mae/huber: regression, else classes)",
    )


@dataclass
class Dataset:
    """Samples and targets in memory, with what they mean.

    Sources return raw features (after `load`: flat (N, F), possibly with NaN where a fill
    is chosen); `prepare` turns them into model inputs (N, *shape) with the fitted
    `preprocessing`.
    """

    x: NDArray[np.float32]  # (N, *sample_shape)
    y: NDArray[np.generic]  # (N,) int class labels, or (N, T) float targets / 0-1 labels
    kind: Kind
    class_names: list[str] | None = None  # classification: the label of each index
    target_names: list[str] | None = None
    feature_names: list[str] | None = None  # default: x1, x2, ...
    categories: dict[str, list[str]] = field(default_factory=dict)  # one-hot text columns
    given: dict[str, NDArray[np.int64]] = field(default_factory=dict)  # split rows from files
    preprocessing: Preprocessing | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def n_classes(self) -> int:
        return len(self.class_names) if self.class_names else 0

    def save_preprocessing(self, run_folder: Path) -> None:
        """preprocessing.json in the run folder: what predict and eval apply to new rows."""
        from nncli.runs.files import PREPROCESSING

        if self.preprocessing is not None:
            self.preprocessing.save(run_folder / PREPROCESSING)


datasets: Registry[Callable[..., Dataset]] = Registry("dataset", key="source", base=DataParams)


def resolve_task(task: Kind | None, loss_target: LossTarget | None, n_targets: int) -> Kind | None:
    """A source's `task:` where it is left to the loss (None without a loss to ask)."""
    if task is not None or loss_target is None:
        return task
    if loss_target == "value":
        return "regression"
    if loss_target == "binary" and n_targets > 1:
        return "multilabel"
    return "classification"


def load(params: DataParams, seed: int, loss_target: LossTarget | None = None) -> Dataset:
    """Build the dataset a data section names, with `seed` for anything random; its x flat
    (N, F) and its preprocessing laid out but not fitted. `loss_target` settles a source's
    `task:` where the file leaves it to the loss."""
    import numpy as np

    name = getattr(params, datasets.key)
    entry = datasets.get(name)
    # a source whose targets could be classes or values (`task:`) also hears the loss's view
    if "task" in type(params).model_fields:
        dataset = entry.build(params, seed, loss_target)
    else:
        dataset = entry.build(params, seed)
    natural = list(dataset.x.shape[1:])
    flat = dataset.x.reshape(len(dataset.x), -1)
    width = flat.shape[1]
    shape = list(getattr(params, "shape", None) or natural)
    if math.prod(shape) != width:
        raise NncliError(
            f"data.shape {shape} holds {math.prod(shape)} values but each sample of "
            f"{name} has {width} ({'x'.join(map(str, natural))})"
        )
    names = dataset.feature_names or [f"x{i + 1}" for i in range(width)]
    features = [Feature(name=n, categories=dataset.categories.get(n)) for n in names]
    if sum(len(f.columns) for f in features) != width:  # pragma: no cover - a builder's bug
        raise ValueError(f"{name}: feature names do not match the columns")
    targets = dataset.target_names or (
        dataset.class_names if dataset.kind == "multilabel" and dataset.class_names else ["y"]
    )
    pre = Preprocessing(
        source=name,
        features=features,
        kind=dataset.kind,
        targets=targets,
        class_names=dataset.class_names,
        shape=shape,
        scale=getattr(params, "scale", None),
        standardize=getattr(params, "standardize", False),
        fill=getattr(params, "fill", None),
    )
    x = np.ascontiguousarray(flat, dtype=np.float32)
    return replace(dataset, x=x, preprocessing=pre)


def split(dataset: Dataset, spec: Split, seed: int) -> dict[str, NDArray[np.int64]]:
    """Seeded indices of each split present (train always; val/test where a file gives it or
    its fraction is above 0).

    Fractions are taken from the rows no file assigns. Stratified splits take each fraction
    from every class, so small classes are kept in proportion; an empty split is an error
    that says how to fix it.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    n = len(dataset.x)
    given = dataset.given
    pool = np.arange(n)
    if given:
        pool = np.setdiff1d(pool, np.concatenate(list(given.values())))
    fractions = {"val": spec.val, "test": spec.test}
    for name in given:
        fractions.pop(name, None)
    if spec.stratify and dataset.kind == "classification":
        groups = [pool[dataset.y[pool] == c] for c in np.unique(dataset.y[pool])]
    else:
        groups = [pool]
    parts: dict[str, list[NDArray[np.int64]]] = {"train": [], "val": [], "test": []}
    for group in groups:
        shuffled = rng.permutation(group)
        start = 0
        for name, fraction in fractions.items():
            take = round(fraction * len(shuffled))
            parts[name].append(shuffled[start : start + take])
            start += take
        parts["train"].append(shuffled[start:])
    out: dict[str, NDArray[np.int64]] = {}
    for name in SPLITS:
        if name in given:
            out[name] = given[name].astype(np.int64)
            continue
        if name != "train" and fractions[name] == 0:
            continue
        idx = np.sort(np.concatenate(parts[name])).astype(np.int64)
        if len(idx) == 0:
            fix = (
                "use more samples or a larger fraction"
                if name != "train"
                else "lower data.split.val / data.split.test"
            )
            raise NncliError(f"the {name} split of {len(pool)} samples is empty; {fix}")
        out[name] = rng.permutation(idx) if name == "train" else idx
    return out


def _check_classes(dataset: Dataset, indices: dict[str, NDArray[np.int64]]) -> list[str]:
    """A class absent from the train split is an error; from a held-out one, a warning."""
    import numpy as np

    names = dataset.class_names or []
    warnings = []
    for split_name, idx in indices.items():
        absent = [names[c] for c in np.setdiff1d(np.arange(len(names)), dataset.y[idx])]
        if not absent:
            continue
        listed = ", ".join(repr(a) for a in absent[:5]) + (" ..." if len(absent) > 5 else "")
        if split_name == "train":
            raise NncliError(
                f"class(es) {listed} have no rows in the train split ({len(idx)} rows), so the "
                "model cannot learn them; add rows of them or remove them from the data"
            )
        warnings.append(
            f"the {split_name} split ({len(idx)} rows) has no rows of class(es) {listed}; its "
            "metrics leave them out (use a larger data.split fraction or more data)"
        )
    return warnings


def prepare(
    params: DataParams,
    seed: int,
    loss_target: LossTarget | None = None,
    batch_size: int | None = None,
) -> tuple[Dataset, dict[str, NDArray[np.int64]]]:
    """Load, split, fit the preprocessing on the train split only and apply it to every
    row: the dataset's x becomes the model inputs (N, *shape)."""
    dataset = load(params, seed, loss_target)
    indices = split(dataset, params.split, seed)
    warnings = list(dataset.warnings)
    if dataset.kind == "classification":
        warnings += _check_classes(dataset, indices)
    n_train = len(indices["train"])
    if batch_size is not None and n_train < batch_size:
        warnings.append(
            f"the train split has {n_train} rows, fewer than train.batch_size {batch_size}: "
            "every step uses all of them"
        )
    assert dataset.preprocessing is not None  # load lays it out
    fitted = dataset.preprocessing.fit(dataset.x, indices["train"])
    x = fitted.transform(dataset.x, overwrite=True)  # `load` made this x: ours to change
    return replace(dataset, x=x, preprocessing=fitted, warnings=warnings), indices


def encode_labels(values: NDArray[Any], what: str) -> tuple[NDArray[np.int64], list[str]]:
    """Class indices of labels (numbers or text) and the label of each index, sorted."""
    import numpy as np
    import pandas as pd

    from nncli.data.preprocess import label_strings, sort_labels

    labels = label_strings(pd.Series(values))
    if labels.isna().any():
        raise NncliError(f"{what} has missing labels")
    names = sort_labels(sorted(set(labels.tolist())))
    index = {name: i for i, name in enumerate(names)}
    codes: NDArray[np.int64] = np.asarray(labels.map(index), dtype=np.int64)
    return codes, names


from nncli.data import files as _files  # noqa: E402,F401  (registers the entries)
from nncli.data import generators as _generators  # noqa: E402,F401
from nncli.data import sklearn_sets as _sklearn_sets  # noqa: E402,F401
