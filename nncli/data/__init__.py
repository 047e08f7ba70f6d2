"""Data sources: the registry of entries that each produce a Dataset, and the types they
share; pipeline.py turns one into model inputs (load, split, prepare)."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, Field, model_validator

from nncli.data.augment import Augment, augment_field
from nncli.data.preprocess import Feature, Fill, Preprocessing, TargetKind
from nncli.data.sequences import Series, Tokens
from nncli.errors import NncliError
from nncli.registry import Params, Registry

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

__all__ = [
    "Feature",
    "Fill",
    "Preprocessing",
    "TargetKind",
    "load",
    "prepare",
    "split",
    "take_splits",
]

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
    augment: Augment = augment_field()


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

    def missing_files(self) -> list[NncliError]:
        """Each path given that is not a regular file, as loading would refuse it (what
        `nncli validate` checks without reading them)."""
        from nncli.inputs import regular_size

        found = []
        for name in self.path_fields:
            value = getattr(self, name)
            if value is not None:
                try:
                    regular_size(Path(value), f"data.{name}: {value}")
                except NncliError as exc:
                    found.append(exc)
        return found

    def with_folder(self, folder: Path) -> FileParams:
        """These parameters with every relative path made absolute from `folder`."""
        update = {}
        for name in self.path_fields:
            value = getattr(self, name)
            if value is not None:
                try:
                    path = Path(value).expanduser()
                except RuntimeError:  # `~nosuchuser/x.csv`: no such user, no home to expand
                    user = value[1:].partition("/")[0]
                    raise NncliError(
                        f"data.{name}: {value} starts with ~{user}, but no user '{user}' has "
                        "a home folder here; write the path in full"
                    ) from None
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


PathText = Annotated[str, Field(min_length=1)]


class SplitFiles(FileParams):
    """Sources whose train rows are in the file `path` and whose validation and test rows, where
    given, are in `val_path` and `test_path` (each source declares the three fields)."""

    path_fields: ClassVar[tuple[str, ...]] = ("path", "val_path", "test_path")
    held_out_files: ClassVar[dict[str, str]] = {"val": "val_path", "test": "test_path"}

    def split_files(self) -> dict[str, tuple[Path, str]]:
        """Each split that a file gives (train first): the file, and its key for messages."""
        fields = {"train": "path", **self.held_out_files}
        return {
            split_name: (Path(getattr(self, name)), f"data.{name}")
            for split_name, name in fields.items()
            if getattr(self, name) is not None
        }


def stack_splits(
    xs: dict[str, NDArray[Any]],
) -> tuple[NDArray[np.float32], dict[str, NDArray[np.int64]]]:
    """Each split's inputs (train first) as one float32 array, and the rows of each held-out
    split."""
    import numpy as np

    given: dict[str, NDArray[np.int64]] = {}
    start = 0
    for name, part in xs.items():
        if name != "train":
            given[name] = np.arange(start, start + len(part), dtype=np.int64)
        start += len(part)
    # float32 as it is stacked: one copy of the inputs at a time beside the files' arrays
    parts = list(xs.values())
    x = parts[0] if len(parts) == 1 else np.concatenate(parts, dtype=np.float32)
    return np.asarray(x, dtype=np.float32), given


def check_generated(p: DataParams, n_values: int) -> None:
    """A generator makes `n_values` float64 numbers (and a few working copies of them):
    refused before any is made where this machine has not the memory."""
    from nncli.inputs import check_memory

    sizes = {k: v for k, v in p if k.startswith("n_") and isinstance(v, int)}
    shown = ", ".join(f"data.{k} {v:,}" for k, v in sizes.items())
    check_memory(f"{shown} ({n_values:,} values)", n_values * 8 * 4, "lower them")


def finite32(p: DataParams, *arrays: NDArray[Any]) -> None:
    """Numbers a generator made that float32 cannot hold (NaN, infinite, beyond ±3.4e38)
    are refused, naming the parameters that made them: the largest first."""
    import numpy as np

    from nncli.data.preprocess import RANGE, out_of_range

    if not any(np.isnan(a).any() or out_of_range(a).any() for a in arrays):
        return
    numbers = {
        k: max(map(abs, v)) if isinstance(v, list) else abs(v)
        for k, v in p
        if isinstance(v, float | list) and k not in ("shape", "augment")
    }
    largest = max(numbers, key=numbers.__getitem__)
    raise NncliError(
        f"data.{largest} {getattr(p, largest)} makes the generated numbers leave float32's "
        f"range: they must be {RANGE}; make it smaller"
    )


@dataclass(frozen=True)
class Targets:
    """A source's trait (`Entry.info`): the targets it makes, known from its parameters
    without making them; `count` (classes, labels or target columns) is a number or the
    name of the parameter that gives it."""

    kind: TargetKind
    count: int | str

    def of(self, p: DataParams) -> int:
        return self.count if isinstance(self.count, int) else int(getattr(p, self.count))


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
    kind: TargetKind
    class_names: list[str] | None = None  # classification: the label of each index
    target_names: list[str] | None = None
    feature_names: list[str] | None = None  # default: x1, x2, ...
    categories: dict[str, list[str]] = field(default_factory=dict)  # one-hot text columns
    given: dict[str, NDArray[np.int64]] = field(default_factory=dict)  # split rows from files
    preprocessing: Preprocessing | None = None
    warnings: list[str] = field(default_factory=list)
    series: Series | None = None  # a timeseries: x holds windows (N, window, columns)
    texts: list[str] | None = None  # a text column's rows; x is their ids once `prepare` fits
    tokens: Tokens | None = None  # how `texts` become ids (the vocabulary from train only)
    vocab_size: int | None = None  # token id inputs: ids 0 .. vocab_size - 1 (0 pads, 1 unknown)

    @property
    def n_classes(self) -> int:
        return len(self.class_names) if self.class_names else 0

    def save_preprocessing(self, run_folder: Path) -> None:
        """preprocessing.json in the run folder: what predict and eval apply to new rows."""
        from nncli.runs.files import PREPROCESSING

        if self.preprocessing is not None:
            self.preprocessing.save(run_folder / PREPROCESSING)


datasets: Registry[Callable[..., Dataset]] = Registry("dataset", key="source", base=DataParams)


def resolve_task(
    task: TargetKind | None, loss_target: LossTarget | None, n_targets: int
) -> TargetKind | None:
    """A source's `task:` where it is left to the loss (None without a loss to ask)."""
    if task is not None or loss_target is None:
        return task
    if loss_target == "value":
        return "regression"
    if loss_target == "binary" and n_targets > 1:
        return "multilabel"
    return "classification"


def encode_labels(values: NDArray[Any], what: str) -> tuple[NDArray[np.int64], list[str]]:
    """Class indices of labels (numbers or text) and the label of each index, sorted."""
    import numpy as np

    numbers = np.asarray(values)
    kind = numbers.dtype.kind
    if kind in "iu" or (kind == "f" and bool(np.isfinite(numbers).all())):
        found, inverse = np.unique(numbers, return_inverse=True)
        if kind in "iu" or bool(np.all(np.mod(found, 1) == 0)):  # whole numbers: in numpy
            return inverse.reshape(len(numbers)).astype(np.int64), [
                str(int(v)) for v in found.tolist()
            ]
    from nncli.data.labels import label_text, sort_labels

    labels = [label_text(v) for v in numbers.tolist()]
    texts = [label for label in labels if label is not None]
    if len(texts) < len(labels):
        raise NncliError(f"{what} has missing labels")
    names = sort_labels(sorted(set(texts)))
    index = {name: i for i, name in enumerate(names)}
    codes = np.fromiter((index[text] for text in texts), dtype=np.int64, count=len(texts))
    return codes, names


from nncli.data import arrays as _arrays  # noqa: E402,F401  (registers the entries)
from nncli.data import csv as _csv  # noqa: E402,F401
from nncli.data import generators as _generators  # noqa: E402,F401
from nncli.data import images as _images  # noqa: E402,F401
from nncli.data import npy as _npy  # noqa: E402,F401
from nncli.data import npz as _npz  # noqa: E402,F401
from nncli.data import parquet as _parquet  # noqa: E402,F401
from nncli.data import seqsets as _seqsets  # noqa: E402,F401
from nncli.data import sklearn_sets as _sklearn_sets  # noqa: E402,F401
from nncli.data import text as _text  # noqa: E402,F401
from nncli.data import timeseries as _timeseries  # noqa: E402,F401
from nncli.data.pipeline import load, prepare, split, take_splits  # noqa: E402
