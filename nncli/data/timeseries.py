"""`source: timeseries`: columns of a CSV (or arrays of an .npz file) in time order, cut
into windows of the past `window` rows, each with the target `horizon` rows after its last
row. The split is chronological (train, then val, then test) and standardisation learns
from the rows the train windows read only; targets stay in their own units."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import Field, field_validator

from nncli.data import Dataset, FileParams, PathText, Split, Targets, datasets
from nncli.data.preprocess import Feature, encode, lines
from nncli.data.sequences import Series, lagged, windows
from nncli.errors import NncliError
from nncli.inputs import read_csv

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from numpy.typing import NDArray

Names = Annotated[list[str], Field(min_length=1)]


class SeriesSplit(Split):
    """A timeseries' split: the last `test` of its windows test, the `val` before them
    validate, the earlier ones train (never shuffled across time)."""

    stratify: bool = Field(default=False, description="not for a series: it splits in time order")

    @field_validator("stratify")
    @classmethod
    def _in_time_order(cls, value: bool) -> bool:
        if value:
            raise ValueError(
                "a timeseries splits in time order (train, then val, then test), so stratify "
                "must be false (stratifying would mix later rows into training); remove it"
            )
        return value


class WindowParams(FileParams):
    """What every windowed source shares."""

    window: int = Field(default=10, ge=1, description="past rows (steps) in each sample")
    horizon: int = Field(default=1, ge=1, description="the target is this many rows ahead")
    split: SeriesSplit = SeriesSplit()


class Timeseries(WindowParams):
    """Columns in time order; relative paths are from the experiment file's folder."""

    path_fields: ClassVar[tuple[str, ...]] = ("path",)
    path: PathText = Field(description="a CSV file, or an .npz file of one 1-D array per column")
    target: str | Names = Field(description="the column (or columns) to forecast")
    features: Names | None = Field(default=None, description="input columns (default: target)")
    date: str | None = Field(default=None, description="a column of dates (not an input)")

    @property
    def target_columns(self) -> list[str]:
        return [self.target] if isinstance(self.target, str) else list(self.target)

    @property
    def n_targets(self) -> int:
        return len(self.target_columns)

    @property
    def input_columns(self) -> list[str]:
        return list(self.features) if self.features is not None else self.target_columns


def read_series(path: Path, key: str, columns: list[str]) -> pd.DataFrame:
    """A CSV's rows, or an .npz file's 1-D arrays `columns` as the columns of a table."""
    import numpy as np
    import pandas as pd

    from nncli.data.npz import read_npz

    if path.suffix.lower() != ".npz":
        return read_csv(path, key)
    arrays = read_npz(path, {c: c for c in columns})
    lengths = {c: a.shape for c, a in arrays.items()}
    if any(len(s) != 1 for s in lengths.values()) or len(set(lengths.values())) > 1:
        shapes = ", ".join(f"'{c}' {s}" for c, s in lengths.items())
        raise NncliError(
            f"{key}: {path} holds {shapes}; give one 1-D array per column, all as long"
        )
    return pd.DataFrame({c: np.asarray(a) for c, a in arrays.items()})


def _check_columns(frame: pd.DataFrame, p: Timeseries | Series, file: Path, key: str) -> None:
    from nncli.data.csv import _known

    columns = [str(c) for c in frame.columns]
    if isinstance(p, Timeseries):
        _known(p.target_columns, columns, "data.target", file)
        _known(p.features or [], columns, "data.features", file)
        _known([p.date] if p.date else [], columns, "data.date", file)
    else:
        _known(p.columns + ([p.date] if p.date else []), columns, key, file)
    if p.date:
        _in_time_order(frame[p.date], file)


def _in_time_order(column: pd.Series[Any], file: Path) -> None:
    """Dates that cannot be read, or rows out of their order, are refused with their lines."""
    import numpy as np
    import pandas as pd

    dates = pd.to_datetime(column, errors="coerce")
    bad = dates.isna().to_numpy()
    if bad.any():
        raise NncliError(
            f"date column '{column.name}' of {file} holds no date on {lines(bad)}; fix them"
        )
    earlier = np.r_[False, np.diff(dates.to_numpy().astype(np.int64)) <= 0]
    if earlier.any():
        raise NncliError(
            f"rows of {file} are not in time order: '{column.name}' does not increase on "
            f"{lines(earlier)}; sort the file by date (each date once)"
        )


def chronological(n: int, split: Split) -> dict[str, NDArray[np.int64]]:
    """The held-out windows of `n`: test the last, val those before (train the rest)."""
    import numpy as np

    n_test, n_val = round(split.test * n), round(split.val * n)
    given: dict[str, NDArray[np.int64]] = {}
    if split.val > 0:
        given["val"] = np.arange(n - n_test - n_val, n - n_test, dtype=np.int64)
    if split.test > 0:
        given["test"] = np.arange(n - n_test, n, dtype=np.int64)
    for name, idx in given.items():
        if len(idx) == 0:
            raise NncliError(
                f"the {name} split of {n} windows is empty; use a longer series or a larger "
                "fraction",
                key=f"data.split.{name}",
            )
    if n - n_test - n_val < 1:
        raise NncliError(
            f"the train split of {n} windows is empty; lower data.split.val / data.split.test",
            key="data.split",
        )
    return given


def series_dataset(
    values: NDArray[np.float32],
    targets: NDArray[np.float32],
    series: Series,
    split: Split,
    target_names: list[str],
    file: str,
) -> Dataset:
    """Windows of `values` (T, F) with the `targets` (T, K) row `horizon` after each."""
    window, horizon = series.window, series.horizon
    n = len(values) - window - horizon + 1
    if n < 1:
        raise NncliError(
            f"data.window {window} and data.horizon {horizon} need at least "
            f"{window + horizon} rows; {file} has {len(values)}: lower them",
            key="data.window",
        )
    start = window - 1 + horizon
    return Dataset(
        windows(values, window)[:n],
        targets[start : start + n],
        "regression",
        target_names=target_names,
        feature_names=lagged(series.columns, window),
        given=chronological(n, split),
        series=series,
    )


@datasets.register(
    "timeseries", params=Timeseries, info=Targets("regression", "n_targets"), imports=("pandas",)
)
def timeseries(p: Timeseries, seed: int) -> Dataset:
    """Windows of a table's columns in time order; the target `horizon` rows ahead."""
    file = Path(p.path)
    wanted = list(
        dict.fromkeys([*p.input_columns, *p.target_columns, *([p.date] if p.date else [])])
    )
    frame = read_series(file, "data.path", wanted)
    _check_columns(frame, p, file, "data.features")
    series = Series(columns=p.input_columns, window=p.window, horizon=p.horizon, date=p.date)
    values = encode(frame, [Feature(name=c) for c in p.input_columns], None, str(file))
    targets = encode(frame, [Feature(name=c) for c in p.target_columns], None, str(file))
    return series_dataset(values, targets, series, p.split, p.target_columns, str(file))


def series_rows(
    series: Series, targets: list[str] | None, frame: pd.DataFrame, file: Path
) -> tuple[NDArray[np.float32], NDArray[np.float32] | None]:
    """New history rows as a trained run reads them: one flat window per row from the
    `window`-th on (predict: the forecast made at that row), or with `targets` only the
    windows whose target row is in the file, and those targets (eval)."""
    _check_columns(frame, series, file, "input")
    values = encode(frame, [Feature(name=c) for c in series.columns], None, str(file))
    if len(values) < series.window + (series.horizon if targets else 0):
        need = series.window + (series.horizon if targets else 0)
        raise NncliError(f"{file} has {len(values)} rows; the run's windows need at least {need}")
    x = windows(values, series.window)
    if targets is None:
        return x.reshape(len(x), -1), None
    n = len(values) - series.window - series.horizon + 1
    y = encode(frame, [Feature(name=c) for c in targets], None, str(file))
    start = series.window - 1 + series.horizon
    return x[:n].reshape(n, -1), y[start : start + n]
