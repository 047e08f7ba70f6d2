"""A table's file read in chunks, never whole (`source: csv` or `parquet` streamed,
tablestream.py): its columns, its rows CHUNK_ROWS at a time, and about how many cells a
CSV holds."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nncli.errors import NncliError, first_line
from nncli.inputs import csv_errors, regular_size
from nncli.progress import measured

if TYPE_CHECKING:
    import pandas as pd

CHUNK_ROWS = 65_536  # a table's rows read (and encoded) at a time
HEAD_BYTES = 2**20  # a CSV's rows are estimated from the lines in its first MB


def csv_values(path: Path, key: str) -> int:
    """About how many cells a CSV holds (rows x columns), from its size and its first MB:
    what `data.stream: auto` weighs (0 where it cannot be read: reading it says why)."""
    size = regular_size(path, f"{key}: {path}")  # not a folder, a device or a pipe
    try:
        with path.open("rb") as f:
            head = f.read(HEAD_BYTES)
    except OSError:
        return 0
    rows = head.count(b"\n")
    columns = head.split(b"\n", 1)[0].count(b",") + 1
    return int(columns * max(rows, 1) * size / max(len(head), 1))


def table_columns(path: Path, key: str, is_parquet: bool) -> list[str]:
    if is_parquet:
        from nncli.data.parquet import parquet_columns

        return parquet_columns(path, key)
    return [str(c) for c in next(_csv_chunks(path, key, None, nrows=0)).columns]


def _csv_chunks(
    path: Path,
    key: str,
    columns: list[str] | None,
    nrows: int | None = None,
    text: Collection[str] = (),
) -> Iterator[pd.DataFrame]:
    """A CSV's rows, CHUNK_ROWS at a time, parsed by the reader `read_csv` uses (pandas' C
    parser: the same numbers, the same cells read as missing); the columns `text` as text."""
    import pandas as pd

    regular_size(path, f"{key}: {path}")
    with csv_errors(path, key):
        if nrows == 0:
            yield pd.read_csv(path, nrows=0)
            return
        dtype = dict.fromkeys(text, str)
        with pd.read_csv(path, usecols=columns, chunksize=CHUNK_ROWS, dtype=dtype) as reader:
            yield from reader


def chunks(
    path: Path,
    key: str,
    columns: list[str],
    is_parquet: bool,
    text: Collection[str] = (),
    what: str = "reading",
    rows: int | None = None,
) -> Iterator[pd.DataFrame]:
    """The table's `columns`, CHUNK_ROWS rows at a time, as DataFrames; a CSV's columns
    `text` read as text (a Parquet file's columns have one type throughout). A bar on the
    terminal (nncli.progress) counts the rows: `what` and the file's name, out of `rows`
    (a Parquet file says its own)."""
    if is_parquet:
        from nncli.data.parquet import open_parquet

        file = open_parquet(path, key)
        read = _parquet_chunks(file, path, key, columns)
        rows = file.metadata.num_rows
    else:
        read = _csv_chunks(path, key, columns, text=text)
    with measured(f"{what} {path.name}", rows, "rows") as advance:
        done = 0
        for chunk in read:
            advance(done)  # the rows before this chunk: called only while a chunk is to come,
            yield chunk  # as a CSV's bar (no total) must not start once its last one is done
            done = len(chunk)


def _parquet_chunks(file: Any, path: Path, key: str, columns: list[str]) -> Iterator[pd.DataFrame]:
    try:
        for batch in file.iter_batches(batch_size=CHUNK_ROWS, columns=columns):
            yield batch.to_pandas(ignore_metadata=True)  # a named index is a column
    except (OSError, ValueError) as exc:
        raise NncliError(f"{key}: {path} cannot be read as Parquet: {first_line(exc)}") from None
