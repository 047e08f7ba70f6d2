"""Preprocessing that a run learns from its train split and keeps (preprocessing.json):
table encoding (one-hot categories, missing values), fill, scale, standardise, reshape."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from nncli.data.labels import label_strings
from nncli.data.sequences import Series, Tokens
from nncli.errors import NncliError, first_line

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from numpy.typing import NDArray

TargetKind = Literal["classification", "regression", "multilabel"]
Fill = Literal["mean", "median", "zero"]
SHOWN_LINES = 5  # rows named in a message about missing or unknown values
FLOAT32_MAX = 3.4028234663852886e38  # inputs and targets are float32: beyond it they are inf
RANGE = "finite numbers within float32's range (±3.4e38)"
MAX_JSON_BYTES = 64 * 2**20  # preprocessing.json holds a few numbers per input column
FORMAT = 1  # preprocessing.json's layout; bumped when a reader could misread an older one


class Feature(BaseModel):
    """One input column: numeric, or text one-hot encoded over `categories`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    categories: list[str] | None = None

    @property
    def columns(self) -> list[str]:
        """Its columns in the encoded matrix: itself, or one per category (`color=red`)."""
        if self.categories is None:
            return [self.name]
        return [f"{self.name}={c}" for c in self.categories]


class Preprocessing(BaseModel):
    """How raw rows become model inputs and targets, and what the train split taught it.

    The layout (features, targets, classes, shape, options) comes from the data source;
    `fill_values`, `mean` and `std` are fitted on the train split only, and are what
    predict and eval apply to new rows (never refitted).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: int = FORMAT
    source: str
    features: list[Feature]
    kind: TargetKind
    targets: list[str]  # target columns (multilabel: one per label)
    class_names: list[str] | None = None  # classification: the label of each class index
    shape: list[int]  # one sample as the model sees it
    scale: float | None = None
    standardize: bool = False
    fill: Fill | None = None
    fill_values: list[float] | None = None  # per encoded column (fitted)
    mean: list[float] | None = None  # per encoded column (fitted; 0 for one-hot columns)
    std: list[float] | None = None  # per encoded column (fitted; 1 for one-hot columns)
    # loss.weight: balanced, as computed from the train split's counts (what eval's loss uses)
    loss_weight: list[float] | None = None
    series: Series | None = None  # a timeseries: how rows become windows (data/sequences.py)
    text: Tokens | None = None  # a text column: its tokens and the train split's vocabulary
    vocab_size: int | None = None  # token id inputs: ids 0 .. vocab_size - 1 (0 pads, 1 unknown)
    # a standardised timeseries' targets: per target column, from the train windows (fitted)
    target_mean: list[float] | None = None
    target_std: list[float] | None = None

    @property
    def columns(self) -> list[str]:
        return [c for f in self.features for c in f.columns]

    @property
    def input_names(self) -> list[str]:
        return [f.name for f in self.features]

    def layout(self) -> dict[str, Any]:
        """Everything but the fitted statistics: equal layouts encode data the same way."""
        return self.model_dump(
            exclude={
                "fill_values": True,
                "mean": True,
                "std": True,
                "loss_weight": True,
                "target_mean": True,
                "target_std": True,
                "vocab_size": self.text is not None,  # a text's: fitted with its vocabulary
                "text": {"vocabulary"},
            }
        )

    def fit(self, x: NDArray[np.float32], train: NDArray[np.int64]) -> Preprocessing:
        """Fill values and standardisation statistics from the rows `train` of `x` only."""
        import numpy as np

        if self.fill is None and not self.standardize:
            return self  # nothing to learn (and no copy of the train rows to make)
        rows = x[train]
        fill_values = None
        if self.fill is not None:
            with np.errstate(all="ignore"):
                if self.fill == "mean":
                    values = np.nanmean(rows, axis=0, dtype=np.float64)
                elif self.fill == "median":
                    values = np.nanmedian(rows.astype(np.float64), axis=0)
                else:
                    values = np.zeros(rows.shape[1])
            # a column empty in every train row: nothing to learn from, so zero
            fill_values = np.nan_to_num(values, nan=0.0).tolist()
        mean = std = None
        if self.standardize:
            done = self.model_copy(update={"fill_values": fill_values})._filled_scaled(rows)
            steps = 1
            if self.series is not None:  # per column of the series' train part, each step alike
                done, steps = self.series.train_part(done[np.argsort(train)]), self.series.window
            mu = np.tile(done.mean(axis=0, dtype=np.float64), steps)
            sd = np.tile(done.std(axis=0, dtype=np.float64), steps)
            sd[sd < 1e-12] = 1.0  # a constant column stays constant instead of dividing by 0
            onehot = np.array([f.categories is not None for f in self.features for _ in f.columns])
            mu[onehot], sd[onehot] = 0.0, 1.0
            mean, std = mu.tolist(), sd.tolist()
        return self.model_copy(update={"fill_values": fill_values, "mean": mean, "std": std})

    def fit_targets(self, y: NDArray[Any], train: NDArray[np.int64]) -> Preprocessing:
        """A standardised timeseries' target statistics, from the train windows' targets."""
        import numpy as np

        if self.series is None or not self.standardize:
            return self
        rows = np.asarray(y[train], dtype=np.float64).reshape(len(train), -1)
        sd = rows.std(axis=0)
        sd[sd < 1e-12] = 1.0
        return self.model_copy(
            update={"target_mean": rows.mean(axis=0).tolist(), "target_std": sd.tolist()}
        )

    def scale_targets(self, y: NDArray[Any], back: bool = False) -> NDArray[Any]:
        """Targets (N, K) as the model learns them (standardised where `fit_targets` was);
        `back`: the model's outputs in the targets' own units."""
        import numpy as np

        if self.target_mean is None or self.target_std is None:
            return y
        mean, std = np.asarray(self.target_mean), np.asarray(self.target_std)
        out: NDArray[Any] = y * std + mean if back else (y - mean) / std
        return out.astype(np.float64 if back else np.float32)

    def affine(self) -> tuple[list[float], list[float]]:
        """Per encoded column, the gain and offset that turn a present raw value into the
        model's input (`input = raw * gain + offset`): what equations and fit plots undo to
        speak in the data's own units."""
        gain = [self.scale if self.scale is not None else 1.0] * len(self.columns)
        if self.mean is None or self.std is None:
            return gain, [0.0] * len(gain)
        return [g / s for g, s in zip(gain, self.std, strict=True)], [
            -m / s for m, s in zip(self.mean, self.std, strict=True)
        ]

    def _filled_scaled(
        self, x: NDArray[np.float32], overwrite: bool = False
    ) -> NDArray[np.float32]:
        import numpy as np

        out = np.asarray(x, dtype=np.float32) if overwrite else np.array(x, dtype=np.float32)
        if not out.flags.writeable:  # e.g. read straight from a file's buffer
            out = out.copy()
        if self.fill_values is not None:
            missing = np.isnan(out)
            if missing.any():
                out[missing] = np.broadcast_to(
                    np.asarray(self.fill_values, dtype=np.float32), out.shape
                )[missing]
        if self.scale is not None:
            out *= np.float32(self.scale)
        return out

    def transform(self, x: NDArray[np.float32], overwrite: bool = False) -> NDArray[np.float32]:
        """Raw encoded rows (N, F) -> model inputs (N, *shape), float32; the same code and
        numbers at training and at predict time, so both see identical inputs. With
        `overwrite`, a float32 `x` is transformed in place (no second copy of the data)."""
        import numpy as np

        if self.standardize and (self.mean is None or self.std is None):
            raise ValueError("fit the preprocessing before transforming")
        out = self._filled_scaled(x, overwrite)
        if self.mean is not None and self.std is not None:
            out -= np.asarray(self.mean, dtype=np.float32)
            out /= np.asarray(self.std, dtype=np.float32)
        return out.reshape(len(out), *self.shape)

    def save(self, path: Path) -> None:
        """Write preprocessing.json whole (runs.files.write_atomic: never half written)."""
        from nncli.runs.files import write_atomic

        # one key a line with its value: a person can read it, and 784 pixels stay short
        fields = self.model_dump(mode="json")
        fields["features"] = [
            {k: v for k, v in f.items() if v is not None} for f in fields["features"]
        ]
        body = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in fields.items())
        write_atomic(path, "{\n" + body + "\n}\n")

    @classmethod
    def read(cls, path: Path) -> Preprocessing:
        if not path.is_file():
            raise NncliError(
                f"{path} is missing: the run was trained by an older nncli or its folder is "
                "incomplete; train it again to predict with it"
            )
        from nncli.inputs import read_bytes

        try:
            pre = cls.model_validate_json(read_bytes(path, str(path), MAX_JSON_BYTES))
        except ValidationError as exc:
            first = first_line(exc)
            raise NncliError(f"{path} cannot be read: {first}") from None
        if pre.format > FORMAT:
            raise NncliError(f"{path} was written by a newer nncli; upgrade nncli to use it")
        size, width = math.prod(pre.shape), len(pre.columns)
        if size != width:  # a damaged file: the model would be built for `size` inputs
            raise NncliError(
                f"{path} is damaged: its shape {pre.shape} holds {size:,} values but its "
                f"features make {width} input column(s); train the run again"
            )
        return pre


# --- tables ------------------------------------------------------------------------------


def lines(rows: NDArray[np.bool_], first: int = 2, word: str = "line") -> str:
    """`lines 3, 7 and 2 more` for row flags of a CSV read with a header (line 1); with
    `first=0, word="row"`, rows of an array counted from 0."""
    import numpy as np

    return numbered(np.flatnonzero(rows) + first, word)


def numbered(where: NDArray[np.int64], word: str = "row") -> str:
    """`rows 3, 7 and 2 more` for the numbers `where` (in the order given)."""
    shown = ", ".join(str(n) for n in where[:SHOWN_LINES])
    more = len(where) - SHOWN_LINES
    plural = "s" if len(where) > 1 else ""
    return f"{word}{plural} {shown}" + (f" and {more} more" if more > 0 else "")


def out_of_range(values: NDArray[Any]) -> NDArray[np.bool_]:
    """Flags of the numbers that float32 cannot hold: infinite or beyond ±3.4e38 (NaN, a
    missing value, is left to the caller)."""
    import numpy as np

    values = np.asarray(values)
    if values.dtype.kind == "f" and values.dtype.itemsize <= 4:  # only inf is beyond float32
        flags: NDArray[np.bool_] = np.isinf(values)
        return flags
    with np.errstate(invalid="ignore", over="ignore"):
        flags = np.abs(np.asarray(values, dtype=np.float64)) > FLOAT32_MAX
    return flags


NOT_LABELS = (
    "numbers, not class labels; a classification loss (such as cross_entropy) needs whole "
    "numbers or text per class, and values need a regression loss (mse, mae, huber)"
)


def not_labels(numbers: NDArray[Any]) -> NDArray[np.bool_]:
    """Flags of the numbers that are no class label: with a fraction, infinite or beyond
    float32 (each would be a class of its own); NaN is left to the caller."""
    import numpy as np

    with np.errstate(invalid="ignore"):
        fraction = np.isfinite(numbers) & (np.mod(numbers, 1) != 0)
    flags: NDArray[np.bool_] = fraction | out_of_range(numbers)
    return flags


def shown_values(values: NDArray[Any]) -> str:
    """The first few distinct values, as a message shows them: `inf, 1e+39`."""
    import numpy as np

    return ", ".join(f"{v:g}" for v in np.unique(values)[:3].tolist())


def is_text(column: pd.Series[Any]) -> bool:
    import pandas as pd

    return not (pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column))


def encode(
    frame: pd.DataFrame,
    features: list[Feature],
    fill: Fill | None,
    file: str,
    where: Callable[[NDArray[np.bool_]], str] = lines,
    fills: str = "mean (or median, zero)",
) -> NDArray[np.float32]:
    """The encoded matrix (N, F) of `features` in `frame`; numeric cells left empty stay NaN
    for `fill`. Absent columns, missing values without a fill, text in a numeric column,
    numbers float32 cannot hold and categories not seen in training are errors that name
    the column and lines of `file` (`where` names rows: a chunk's, or a Parquet file's):
    every one of them, in one NncliError; `fills` is the data.fill a missing value's fix
    offers (streamed: no median)."""
    import numpy as np

    problems: list[str] = []
    absent = [f.name for f in features if f.name not in frame.columns]
    if absent:
        names = ", ".join(repr(n) for n in absent)
        problems.append(f"{file} lacks column(s) {names} that the run was trained on")
    parts: list[NDArray[np.float32]] = []
    for feature in features:
        if feature.name in frame.columns:
            part, found = _encode_column(frame, feature, fill, file, where, fills)
            parts.append(part)
            problems += found
    if len(problems) == 1:
        raise NncliError(problems[0])
    if problems:
        listed = "\n".join(f"  {problem}" for problem in problems)
        raise NncliError(f"{file} has {len(problems)} problems, each to fix:\n{listed}")
    if not parts:
        return np.zeros((len(frame), 0), dtype=np.float32)
    return np.concatenate(parts, axis=1)


def _encode_column(
    frame: pd.DataFrame,
    feature: Feature,
    fill: Fill | None,
    file: str,
    where: Callable[[NDArray[np.bool_]], str],
    fills: str,
) -> tuple[NDArray[np.float32], list[str]]:
    """One feature's encoded columns, and what is wrong with its cells (the column name
    and up to SHOWN_LINES lines of each problem)."""
    import numpy as np
    import pandas as pd

    problems: list[str] = []
    column = frame[feature.name]
    missing = column.isna().to_numpy()
    if missing.any() and fill is None:
        problems.append(
            f"column '{feature.name}' of {file} has missing values on {where(missing)}; "
            f"fill them in, or set data.fill: {fills}"
        )
    if feature.categories is None:
        values = pd.to_numeric(
            column.astype(float) if pd.api.types.is_bool_dtype(column) else column,
            errors="coerce",
        )
        text = values.isna().to_numpy() & ~missing
        if text.any():
            sample = ", ".join(repr(v) for v in column[text].unique()[:3].tolist())
            problems.append(
                f"column '{feature.name}' of {file} holds text ({sample}) on {where(text)}; "
                "it is numeric in training"
            )
        numbers = values.to_numpy(dtype=np.float64, na_value=np.nan)
        big = out_of_range(numbers)
        if big.any():
            problems.append(
                f"column '{feature.name}' of {file} holds {shown_values(numbers[big])} on "
                f"{where(big)}; inputs must be {RANGE}: fix or remove those rows"
            )
        return numbers.astype(np.float32)[:, None], problems
    labels = label_strings(column)
    known = {c: i for i, c in enumerate(feature.categories)}
    unknown = labels.notna().to_numpy() & ~labels.isin(list(known)).to_numpy()
    onehot = np.zeros((len(frame), len(known)), dtype=np.float32)
    if unknown.any():
        sample = ", ".join(repr(v) for v in labels[unknown].unique()[:3].tolist())
        problems.append(
            f"column '{feature.name}' of {file} has value(s) {sample} on {where(unknown)} "
            f"that training never saw (known: {', '.join(feature.categories)})"
        )
        return onehot, problems
    # a missing category (with a fill chosen) encodes as no category at all: all zeros
    present = labels.notna().to_numpy()
    onehot[np.flatnonzero(present), labels[present].map(known).to_numpy(dtype=np.int64)] = 1
    return onehot, problems
