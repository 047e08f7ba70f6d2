"""What a data section tells without loading its data (for `nncli validate`): the targets
it gives (their kind, and how many classes, labels or columns) where that is cheap to know,
and a CSV's header against the columns the section names. Torch- and pandas-free: a CSV is
read by the csv module, its header only, and the target column where it is small."""

from __future__ import annotations

import csv as csvlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from nncli.data import DataParams, LossTarget, TargetKind, Targets, datasets, resolve_task
from nncli.data.csv import Table, _known
from nncli.data.images import folder_classes
from nncli.errors import NncliError

MAX_LABEL_BYTES = 64 * 2**20  # the target column's classes are counted in files up to this

# the cells pandas reads as missing (read_csv's default na_values)
_MISSING = frozenset(
    [
        "#N/A",
        "#N/A N/A",
        "#NA",
        "-1.#IND",
        "-1.#QNAN",
        "-NaN",
        "-nan",
        "1.#IND",
        "1.#QNAN",
        "<NA>",
        "N/A",
        "NA",
        "NULL",
        "NaN",
        "None",
        "n/a",
        "nan",
        "null",
    ]
) | {""}
_BOOLS = {"True": True, "TRUE": True, "true": True, "False": False, "FALSE": False, "false": False}


@dataclass(frozen=True)
class Outline:
    """The targets a data section gives, known without loading it."""

    kind: TargetKind
    count: int  # classes (classification), labels (multilabel) or target columns
    flat: bool  # each sample is a vector (no data.shape of more than one dimension)


def outline(
    p: DataParams, loss_target: LossTarget | None
) -> tuple[Outline | None, list[NncliError]]:
    """The targets of `p` where they are cheap to know (None where only loading tells), and
    the columns loading would refuse (a CSV's target or features it lacks). Its files exist
    (`FileParams.missing_files`)."""
    shape = getattr(p, "shape", None)
    windowed = "window" in type(p).model_fields  # samples (window, columns) unless reshaped
    flat = len(shape) == 1 if shape is not None else not windowed
    traits = datasets.get(getattr(p, datasets.key)).info
    errors = _named_columns(p)
    if isinstance(traits, Targets):
        return (None, errors) if errors else (Outline(traits.kind, traits.of(p), flat), [])
    if errors:
        return None, errors
    if isinstance(p, Table):
        return _csv(p, loss_target, flat)
    classes = folder_classes(p)  # images in class folders: one class a folder
    if classes is not None:
        return Outline("classification", classes, shape is not None and len(shape) == 1), []
    return None, []


def _csv(
    p: Table, loss_target: LossTarget | None, flat: bool
) -> tuple[Outline | None, list[NncliError]]:
    """The header of the train file (a CSV's first line, a Parquet file's schema) against
    the columns named (the checks loading makes, `csv._known`); the classes of a CSV's
    target column where the files are small."""
    from nncli.data.parquet import Parquet, parquet_columns

    files = [path for path, _ in p.split_files().values()]
    parquet = isinstance(p, Parquet)
    columns = parquet_columns(files[0], "data.path") if parquet else _header(files[0])
    if columns is None:  # unreadable as text: loading says why
        return None, []
    errors = []
    for key, names in (
        ("data.target", p.target_columns),
        ("data.features", p.features or []),
        ("data.exclude", p.exclude),
        ("data.categorical", p.categorical),
    ):
        try:
            _known(names, columns, key, files[0])
        except NncliError as exc:
            errors.append(exc)
    task = resolve_task(p.task, loss_target, len(p.target_columns))
    if errors or task is None:
        return None, errors
    if task != "classification":
        return Outline(task, len(p.target_columns), flat), []
    if len(p.target_columns) != 1 or parquet:
        return None, []
    classes = _classes(files, p.target_columns[0])
    return (None if classes is None else Outline(task, classes, flat)), []


def _named_columns(p: DataParams) -> list[NncliError]:
    """A timeseries' or text source's CSV header against the columns it names."""
    from nncli.data.text import Text
    from nncli.data.timeseries import Timeseries

    if isinstance(p, Timeseries) and not p.path.lower().endswith(".npz"):
        named = [("data.target", p.target_columns), ("data.features", p.features or [])]
        named += [("data.date", [p.date])] if p.date else []
    elif isinstance(p, Text):
        named = [("data.text", [p.text]), ("data.target", [p.target])]
    else:
        return []
    path = Path(p.path)
    columns = _header(path)
    errors = []
    for key, names in named if columns is not None else []:
        try:
            _known(names, columns or [], key, path)
        except NncliError as exc:
            errors.append(exc)
    return errors


def _rows(path: Path) -> Iterator[list[str]]:
    """The CSV's rows as text, blank lines skipped (as pandas does)."""
    with path.open(encoding="utf-8-sig", newline="") as f:
        for row in csvlib.reader(f):
            if row:
                yield row


def _header(path: Path) -> list[str] | None:
    """The column names as pandas reads them (an empty name is `Unnamed: i`), or None
    where the file cannot be read as CSV text."""
    try:
        row = next(_rows(path), None)
    except (OSError, UnicodeDecodeError, csvlib.Error):
        return None
    if row is None:
        return None
    return [name or f"Unnamed: {i}" for i, name in enumerate(row)]


def _classes(files: list[Path], column: str) -> int | None:
    """How many distinct labels `column` holds over `files`, read as training reads them
    (whole numbers as one label whatever their spelling, missing cells not a class); None
    where the files are large or cannot be read."""
    try:
        if sum(path.stat().st_size for path in files) > MAX_LABEL_BYTES:
            return None
        labels: set[str] = set()
        for path in files:
            rows = _rows(path)
            header = [name or f"Unnamed: {i}" for i, name in enumerate(next(rows, []))]
            if column not in header:
                return None  # loading names the file that lacks it
            at = header.index(column)
            values = {row[at] for row in rows if at < len(row)} - _MISSING
            labels |= _labels(values)
    except (OSError, UnicodeDecodeError, csvlib.Error):
        return None
    return len(labels)


def _labels(values: set[str]) -> set[str]:
    """One file's labels as training names them: a column of numbers is numbers (`1.0`
    and `1` are one class), of true/false booleans, else the text written."""
    try:
        numbers = {float(v) for v in values}
    except ValueError:
        pass
    else:
        return {str(int(n)) if n.is_integer() else str(n) for n in numbers}
    if values <= _BOOLS.keys():
        return {str(_BOOLS[v]) for v in values}
    return values
