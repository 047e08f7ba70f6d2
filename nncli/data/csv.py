"""The CSV source: a table's target column(s) and feature columns, from one file or one per
split (text columns one-hot). Nothing is downloaded."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field

from nncli.data import (
    Dataset,
    LossTarget,
    PathText,
    SplitFiles,
    TargetKind,
    datasets,
    encode_labels,
    resolve_task,
    stack_splits,
    task_field,
)
from nncli.data.labels import label_strings, sort_labels
from nncli.data.npy import Shuffle, Streamable, streams
from nncli.data.preprocess import (
    NOT_LABELS,
    RANGE,
    Feature,
    Fill,
    encode,
    is_text,
    lines,
    not_labels,
    out_of_range,
    shown_values,
)
from nncli.errors import NncliError
from nncli.inputs import read_csv
from nncli.registry import closest

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from numpy.typing import NDArray

Names = Annotated[list[str], Field(min_length=1)]
Where = Callable[["NDArray[np.bool_]"], str]  # rows flagged -> `lines 3, 7` (preprocess.lines)


class Table(SplitFiles, Streamable):
    """A table's parameters (`source: csv` and `source: parquet`): its target and input
    columns, in memory or (data.stream) encoded once into a cache file streamed from disk."""

    path: PathText = Field(
        description="the table file (its train rows, where val/test files exist)"
    )
    target: str | Names = Field(description="target column, or several (multi-label, multi-output)")
    features: Names | None = Field(
        default=None, description="input columns (default: all but the target and exclude)"
    )
    exclude: list[str] = Field(default=[], description="columns that are not inputs")
    categorical: list[str] = Field(
        default=[], description="numeric columns to one-hot encode as categories"
    )
    fill: Fill | None = Field(
        default=None,
        description="fill missing inputs with the train split's mean/median, or zero; "
        "default: missing values are an error",
    )
    max_categories: int = Field(default=50, ge=2, description="most values a text column may take")
    task: TargetKind | None = task_field()
    val_path: PathText | None = Field(default=None, description="validation rows (for split.val)")
    test_path: PathText | None = Field(default=None, description="test rows (for split.test)")
    shuffle: Shuffle = "chunks"

    @property
    def target_columns(self) -> list[str]:
        return [self.target] if isinstance(self.target, str) else list(self.target)


class Csv(Table):
    """`source: csv`: a table in a CSV file with a header line."""


def _known(names: list[str], columns: list[str], key: str, file: Path) -> None:
    for name in names:
        if name not in columns:
            near = closest(name, columns)
            hint = f"did you mean '{near}'?" if near else f"its columns: {', '.join(columns)}"
            raise NncliError(f"{key}: column '{name}' is not in {file} ({hint})")


def input_columns(
    p: Table, columns: dict[str, list[str]], files: dict[str, tuple[Path, str]]
) -> list[str]:
    """The input columns of a table whose files (train first) have `columns`, each column
    named checked by name against the train file."""
    train_file = files["train"][0]
    names_in_train = columns["train"]
    targets = p.target_columns
    _known(targets, names_in_train, "data.target", train_file)
    _known(p.features or [], names_in_train, "data.features", train_file)
    _known(p.exclude, names_in_train, "data.exclude", train_file)
    _known(p.categorical, names_in_train, "data.categorical", train_file)
    if p.features is not None:
        both = [f for f in p.features if f in targets]
        if both:
            raise NncliError(f"data.features: '{both[0]}' is the target; it cannot be an input")
        names = list(p.features)
    else:
        names = [c for c in names_in_train if c not in targets and c not in p.exclude]
    if not names:
        raise NncliError(f"{train_file} has no input columns besides the target")
    for split_name, found in columns.items():
        absent = [c for c in (*names, *targets) if c not in found]
        if absent:
            path, key = files[split_name]
            listed = ", ".join(repr(c) for c in absent)
            raise NncliError(f"{key}: {path} lacks column(s) {listed} that {train_file} has")
    return names


def one_hot(p: Table, name: str, values: set[str], file: Path) -> list[str]:
    """A text (or categorical) column's categories: its distinct values over every file."""
    if len(values) > p.max_categories:
        raise NncliError(
            f"column '{name}' of {file} holds {len(values)} distinct values, "
            f"more than data.max_categories {p.max_categories}: exclude it (data.exclude), "
            "or raise max_categories to one-hot encode it"
        )
    return sort_labels(sorted(values))


@datasets.register("csv", params=Csv, imports=("pandas",))
def csv(p: Csv, seed: int, loss_target: LossTarget | None = None) -> Dataset:
    """A CSV table: a target column (or several) and feature columns (text is one-hot);
    streamed from an encoded cache file where it would not fit in memory (data.stream)."""
    from nncli.data.tablechunks import csv_values
    from nncli.data.tablestream import stream_table

    files = p.split_files()
    if streams(p, sum(csv_values(path, key) for path, key in files.values())):
        return stream_table(p, files, loss_target, is_parquet=False)
    frames = {name: read_csv(path, key) for name, (path, key) in files.items()}
    return from_frames(p, frames, files, loss_target)


def from_frames(
    p: Table,
    frames: dict[str, pd.DataFrame],
    files: dict[str, tuple[Path, str]],
    loss_target: LossTarget | None,
    where: Where = lines,
) -> Dataset:
    """A table's Dataset from its files read whole (train first); `where` names their rows
    in messages (a CSV's lines, a Parquet file's rows)."""
    import numpy as np
    import pandas as pd

    columns = {name: [str(c) for c in frame.columns] for name, frame in frames.items()}
    names = input_columns(p, columns, files)
    targets = p.target_columns
    # text columns (and those named categorical) are one-hot over every file's values
    whole = pd.concat([f[names] for f in frames.values()], ignore_index=True)
    categories: dict[str, list[str]] = {}
    for name in names:
        column = whole[name]
        if name in p.categorical or is_text(column):
            values = set(label_strings(column).dropna().tolist())
            categories[name] = one_hot(p, name, values, files["train"][0])
    features = [Feature(name=n, categories=categories.get(n)) for n in names]
    xs = [encode(frames[s], features, p.fill, str(files[s][0]), where) for s in frames]
    task = resolve_task(p.task, loss_target, len(targets)) or guess_task(frames["train"], targets)
    ys, class_names = table_targets(frames, files, targets, task, where)
    x, given = stack_splits(dict(zip(frames, xs, strict=True)))
    return Dataset(
        x,
        np.concatenate(ys),
        task,
        class_names,
        target_names=targets,
        feature_names=names,
        categories=categories,
        given=given,
    )


def guess_task(frame: pd.DataFrame, targets: list[str]) -> TargetKind:
    """Without a loss to ask: text, true/false or whole numbers are classes, others values."""
    import numpy as np
    import pandas as pd

    if len(targets) > 1:
        values = frame[targets]
        binary = all(pd.api.types.is_numeric_dtype(values[c]) for c in targets) and bool(
            values.isin([0, 1]).all().all()
        )
        return "multilabel" if binary else "regression"
    column = frame[targets[0]].dropna()
    if is_text(column) or pd.api.types.is_bool_dtype(column):
        return "classification"
    whole = np.all(np.mod(column.to_numpy(dtype=np.float64), 1) == 0)
    return "classification" if whole else "regression"


def table_targets(
    frames: dict[str, pd.DataFrame],
    files: dict[str, tuple[Path, str]],
    targets: list[str],
    task: TargetKind,
    where: Where = lines,
) -> tuple[list[NDArray[Any]], list[str] | None]:
    """Each file's targets as the task needs them; labels become class indices."""
    import numpy as np
    import pandas as pd

    for split_name, frame in frames.items():
        for name in targets:
            missing = frame[name].isna().to_numpy()
            if missing.any():
                raise NncliError(
                    f"target column '{name}' of {files[split_name][0]} is empty on "
                    f"{where(missing)}; a target cannot be filled in: remove those rows"
                )
    if task == "classification":
        if len(targets) > 1:
            raise NncliError(
                f"data.target names {len(targets)} columns but a classification loss takes one "
                "label column; for several 0/1 labels use loss: bce_with_logits (multi-label)"
            )
        for split_name, frame in frames.items():
            _class_labels(frame[targets[0]], files[split_name][0], where)
        labels = pd.concat([f[targets[0]] for f in frames.values()], ignore_index=True)
        codes, names = encode_labels(labels.to_numpy(), f"target column '{targets[0]}'")
        sizes = np.cumsum([len(f) for f in frames.values()])[:-1]
        return list(np.split(codes, sizes)), names
    ys: list[NDArray[Any]] = []
    for split_name, frame in frames.items():
        values = frame[targets]
        file = files[split_name][0]
        for name in targets:
            column = values[name]
            if is_text(column):
                text = column.map(lambda v: isinstance(v, str)).to_numpy(dtype=bool)
                sample = ", ".join(repr(v) for v in column[text].unique()[:3].tolist())
                use = (
                    "0/1 values for each label"
                    if task == "multilabel"
                    else "numbers (for classes use a classification loss such as cross_entropy)"
                )
                raise NncliError(
                    f"target column '{name}' of {file} holds text ({sample}) on {where(text)}; "
                    f"a {task} target needs {use}"
                )
        numbers = values.to_numpy(dtype=np.float64)
        big = out_of_range(numbers)
        if big.any():
            col = targets[int(np.flatnonzero(big.any(axis=0))[0])]
            raise NncliError(
                f"target column '{col}' of {file} holds {shown_values(numbers[big])} on "
                f"{where(np.asarray(big.any(axis=1)))}; targets must be {RANGE}"
            )
        array = numbers.astype(np.float32)
        if task == "multilabel":
            bad = ~np.isin(array, (0.0, 1.0))
            if bad.any():
                col = targets[int(np.flatnonzero(bad.any(axis=0))[0])]
                raise NncliError(
                    f"target column '{col}' of {file} holds values other than 0 and 1 on "
                    f"{where(np.asarray(bad.any(axis=1)))}; multi-label targets are 0/1 per label"
                )
            ys.append(array.astype(np.int64))
        else:
            ys.append(array)
    return ys, (targets if task == "multilabel" else None)


def _class_labels(column: pd.Series[Any], file: Path, where: Where = lines) -> None:
    """Numbers with fractions are values, not classes: each would be a class of its own."""
    import numpy as np
    import pandas as pd

    if is_text(column) or pd.api.types.is_bool_dtype(column):
        return
    numbers = column.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = not_labels(numbers)
    if bad.any():
        raise NncliError(
            f"target column '{column.name}' of {file} holds {shown_values(numbers[bad])} on "
            f"{where(bad)}: {NOT_LABELS}"
        )
