"""`source: parquet`: a table in a Parquet file (pyarrow, the `parquet` extra), with the
keys of `source: csv`; read whole into the frames a CSV's rows become, or (data.stream)
encoded in chunks into a cache file streamed from disk (data/tablestream)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import model_validator
from pydantic_core import PydanticCustomError

from nncli.data import Dataset, LossTarget, datasets
from nncli.data.csv import Table, from_frames
from nncli.data.npy import streams
from nncli.data.preprocess import lines
from nncli.errors import NncliError, first_line
from nncli.inputs import check_memory, read_csv, regular_size, size_text

if TYPE_CHECKING:
    import pandas as pd

MISSING = "Parquet files need pyarrow, which is not installed (pip install 'nncli[parquet]')"
SUFFIXES = (".parquet", ".pq")
rows_at = partial(lines, first=1, word="row")  # a Parquet file's rows, counted from 1


class Parquet(Table):
    """`source: parquet`: the keys of `source: csv`, each path a Parquet file."""

    @model_validator(mode="after")
    def _pyarrow(self) -> Parquet:
        from nncli.loggers.extras import installed

        if not installed("pyarrow"):
            raise PydanticCustomError("missing_extra", MISSING)
        return self

    def missing_files(self) -> list[NncliError]:
        """Each file that is missing or no Parquet file (its footer is read, nothing else)."""
        found = [_parts(Path(p), k) for p, k in self.split_files().values() if Path(p).is_dir()]
        found = found or super().missing_files()
        if found:
            return found
        errors = []
        for path, key in self.split_files().values():
            try:
                parquet_columns(path, key)
            except NncliError as exc:
                errors.append(exc)
        return errors


def _parts(folder: Path, key: str) -> NncliError:
    """A folder given where a Parquet file goes: a data set written in parts (Spark, Dask,
    pyarrow's write_dataset)."""
    return NncliError(
        f"{key}: {folder} is a folder (a data set written in parts), not a Parquet file: give "
        "one file, or combine the parts into one, e.g. pyarrow.parquet."
        f"write_table(pyarrow.parquet.read_table('{folder}'), 'table.parquet')"
    )


def open_parquet(path: Path, key: str) -> Any:
    """The opened pyarrow.parquet.ParquetFile (its footer read)."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise NncliError(MISSING) from None
    if path.is_dir():
        raise _parts(path, key)
    regular_size(path, f"{key}: {path}")
    try:
        # read column chunks through a 1 MB buffer, none kept: pyarrow's default (pre_buffer)
        # keeps every chunk read, the whole file by the end of a streamed pass (4M rows, 294
        # MB of Parquet: 338 MB held, against 61 MB without)
        return pq.ParquetFile(path, pre_buffer=False, buffer_size=2**20)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise NncliError(f"{key}: {path} cannot be read as Parquet: {first_line(exc)}") from None


def parquet_columns(path: Path, key: str) -> list[str]:
    """The table's column names: every column of the file, a named pandas index included
    (`df.set_index('id')` keeps 'id' as a column of the file), but not the unnamed index
    pandas may add (`__index_level_0__`: row numbers, no data)."""
    names = open_parquet(path, key).schema_arrow.names
    return [str(n) for n in names if not str(n).startswith("__index_level_")]


def parquet_values(path: Path, key: str) -> int:
    """Rows x columns, from the file's metadata."""
    meta = open_parquet(path, key).metadata
    return int(meta.num_rows) * max(1, int(meta.num_columns))


def read_parquet(path: Path, key: str) -> pd.DataFrame:
    """A whole Parquet file as a DataFrame (pandas through pyarrow, as `read_csv` a CSV),
    refused first where its rows would not fit in memory."""
    file = open_parquet(path, key)
    meta = file.metadata
    check_memory(
        f"{key}: {path} ({size_text(path.stat().st_size)}, {meta.num_rows:,} rows)",
        meta.num_rows * max(1, meta.num_columns) * 8 * 2,
        "set data.stream: true, or use fewer columns",
    )
    try:
        # as the columns of the file, not as pandas' metadata would rebuild the frame: a named
        # index stays a column (streamed chunks are read the same way: tablechunks.chunks)
        table = file.read(columns=parquet_columns(path, key))
        frame: pd.DataFrame = table.to_pandas(ignore_metadata=True)
    except (OSError, ValueError) as exc:
        raise NncliError(f"{key}: {path} cannot be read as Parquet: {first_line(exc)}") from None
    if len(frame) == 0:
        raise NncliError(f"{key}: {path} has columns but no rows")
    return frame


def read_table(path: Path, key: str) -> pd.DataFrame:
    """A table given to predict or eval: a Parquet file by its suffix, else a CSV."""
    if path.suffix.lower() in SUFFIXES:
        return read_parquet(path, key)
    return read_csv(path, key)


def where_of(path: Path) -> Callable[[Any], str]:
    """How messages name a table file's rows: a Parquet file's rows, a CSV's lines."""
    return rows_at if path.suffix.lower() in SUFFIXES else lines


@datasets.register("parquet", params=Parquet, imports=("pandas", "pyarrow.parquet"))
def parquet(p: Parquet, seed: int, loss_target: LossTarget | None = None) -> Dataset:
    """A Parquet table: a target column (or several) and feature columns (text is one-hot);
    streamed from an encoded cache file where it would not fit in memory (data.stream)."""
    from nncli.data.tablestream import stream_table

    files = p.split_files()
    if streams(p, sum(parquet_values(path, key) for path, key in files.values())):
        return stream_table(p, files, loss_target, is_parquet=True)
    frames = {name: read_parquet(path, key) for name, (path, key) in files.items()}
    return from_frames(p, frames, files, loss_target, rows_at)
