"""A table streamed from disk (`source: csv` or `parquet` with data.stream): read in chunks
twice, never whole: first its row count, the values of its text columns and its targets
(small: kept), then each chunk encoded (`preprocess.encode`) into a float32 .npy cache file,
which the run reads rows from as it reads an .npy's (`NpyRows`). The cache is keyed by the
files (path, size, mtime) and the encoding, so a rerun, a resume and a sweep's trials reuse
it; it is written under a temporary name and renamed, so it is whole or absent."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nncli.data import Dataset, LossTarget, resolve_task
from nncli.data.csv import Table, Where, guess_task, input_columns, one_hot, table_targets
from nncli.data.labels import label_strings
from nncli.data.npy import SOURCES
from nncli.data.preprocess import Feature, encode, is_text, lines
from nncli.data.tablecache import TableRows, cache_folder, hold, source_prefix, tidy
from nncli.data.tablechunks import chunks, table_columns
from nncli.errors import NncliError
from nncli.inputs import size_text
from nncli.runs.lock import waited

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from numpy.typing import NDArray

FORMAT = 1  # the cache's layout: a new one is a new key
# a cache file (absolute, as np.memmap names it) -> what this process did with it, for the
# console's data line (engine/batches.data_line)
NOTES: dict[str, str] = {}


@dataclass
class Survey:
    """What the first pass learns of a table: per split, its rows and its targets; per input
    column, whether it is text and, per split, the values it takes (numbers only while
    few); per split, the columns its file holds as text though some of its chunks are
    numbers (read as text, as the whole file read at once would be)."""

    rows: dict[str, int] = field(default_factory=dict)
    targets: dict[str, pd.DataFrame] = field(default_factory=dict)
    text: set[str] = field(default_factory=set)
    values: dict[str, dict[str, set[str]]] = field(default_factory=dict)
    many: set[tuple[str, str]] = field(default_factory=set)  # (column, split): numeric,
    # past max_categories values
    mixed: dict[str, set[str]] = field(default_factory=dict)

    def categories(self, name: str) -> set[str]:
        """Every value the column `name` takes, over every file."""
        return set().union(*self.values.get(name, {}).values())


def survey(
    p: Table, files: dict[str, tuple[Path, str]], names: list[str], is_parquet: bool
) -> Survey:
    """The first pass: each file read in chunks, its input columns `names` and targets."""
    import pandas as pd

    found = Survey()
    targets = p.target_columns
    for split_name, (path, key) in files.items():
        parts, count = [], 0
        kinds: dict[str, set[bool]] = {}  # column -> is_text of its chunks in this file
        mixed = found.mixed.setdefault(split_name, set())
        for chunk in chunks(path, key, [*names, *targets], is_parquet):
            count += len(chunk)
            parts.append(chunk[targets].copy())
            for name in names:
                column = chunk[name]
                kind = kinds.setdefault(name, set())
                kind.add(is_text(column))
                if len(kind) == 2:  # read whole, pandas would read each of its cells as text
                    mixed.add(name)
                elif name not in mixed:
                    _seen(p, found, split_name, column, files["train"][0])
        if count == 0:
            raise NncliError(f"{key}: {path} has a header but no rows")
        found.rows[split_name] = count
        found.targets[split_name] = pd.concat(parts, ignore_index=True)
        if mixed:  # their values again, as the text of each cell
            for name in mixed:
                found.values[name][split_name] = set()
                found.many.discard((name, split_name))
            for chunk in chunks(path, key, sorted(mixed), is_parquet, text=mixed):
                for name in mixed:
                    _seen(p, found, split_name, chunk[name], files["train"][0])
    return found


def _seen(p: Table, found: Survey, split_name: str, column: pd.Series[Any], file: Path) -> None:
    """The values of a chunk's column added to those its file's column takes; a text (or
    categorical) column refused as soon as it takes more than max_categories values (the
    train `file` named, as in memory)."""
    import numpy as np
    import pandas as pd

    name = str(column.name)
    seen = found.values.setdefault(name, {}).setdefault(split_name, set())
    if name in p.categorical or is_text(column):
        found.text.add(name)
        seen |= set(label_strings(column).dropna().tolist())
        if len(seen) > p.max_categories or len(found.categories(name)) > p.max_categories:
            # refused now, not once every value of (say) an id column is kept
            raise NncliError(
                f"column '{name}' of {file} holds more than data.max_categories "
                f"{p.max_categories} distinct values: exclude it (data.exclude), or raise "
                "max_categories to one-hot encode it"
            )
    elif (name, split_name) not in found.many:  # it may be text in another file
        numbers = np.unique(column.dropna().to_numpy())
        if len(numbers) <= p.max_categories:
            seen |= set(label_strings(pd.Series(numbers)).tolist())
        if len(numbers) > p.max_categories or len(seen) > p.max_categories:
            found.many.add((name, split_name))  # too many to one-hot: kept no longer
            seen.clear()


def stream_table(
    p: Table,
    files: dict[str, tuple[Path, str]],
    loss_target: LossTarget | None,
    is_parquet: bool,
) -> Dataset:
    """The table's Dataset with its inputs in the (built or reused) cache file, memory-mapped:
    `data.pipeline` and `engine.batches` stream it as they stream an .npy. Its files are
    Parquet files (`source: parquet`, whatever their names) or CSVs."""
    import numpy as np

    if p.fill == "median":
        raise NncliError(
            "data.fill: median cannot be found in chunks, and a streamed table is read in "
            "chunks; use fill: mean (or zero), or data.stream: false if the table fits in memory",
            key="data.fill",
        )
    first, word = (1, "row") if is_parquet else (2, "line")
    where: Where = partial(lines, first=first, word=word)
    columns = {name: table_columns(path, key, is_parquet) for name, (path, key) in files.items()}
    names = input_columns(p, columns, files)
    before = _stats(files)  # compared after encoding: a file written meanwhile is refused
    found = survey(p, files, names, is_parquet)
    train_file = files["train"][0]
    categories: dict[str, list[str]] = {}
    for name in sorted(found.text, key=names.index):
        if any(column == name for column, _ in found.many):  # numbers in one file, text in
            # another (too many numbers to keep)
            raise NncliError(
                f"column '{name}' of {train_file} holds text and more than "
                f"data.max_categories {p.max_categories} distinct numbers: exclude it "
                "(data.exclude), or fix the text cells to make it numeric"
            )
        categories[name] = one_hot(p, name, found.categories(name), train_file)
    features = [Feature(name=n, categories=categories.get(n)) for n in names]
    targets = p.target_columns
    task = resolve_task(p.task, loss_target, len(targets)) or guess_task(
        found.targets["train"], targets
    )
    ys, class_names = table_targets(found.targets, files, targets, task, where)
    path = _cache(Encoding(p, files, features, found, before, is_parquet, first, word))
    given: dict[str, NDArray[np.int64]] = {}
    start = 0
    for split_name, count in found.rows.items():
        if split_name != "train":
            given[split_name] = np.arange(start, start + count, dtype=np.int64)
        start += count
    x = np.load(path, mmap_mode="r", allow_pickle=False)
    starts = np.cumsum([0, *found.rows.values()])[:-1].tolist()
    parts = tuple(
        (int(s), f"{key}: {file}") for s, (file, key) in zip(starts, files.values(), strict=True)
    )
    width = int(np.prod(x.shape[1:]))
    SOURCES[str(x.filename)] = TableRows(
        str(x.filename), x.offset, x.dtype.str, width, parts, first, word
    )
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


@dataclass(frozen=True)
class Encoding:
    """What a table's cache is built from: its files (as `stats` found them before the
    survey), what the survey found, the encoded `features`, and how rows are named."""

    p: Table
    files: dict[str, tuple[Path, str]]
    features: list[Feature]
    found: Survey
    stats: list[list[Any]]
    is_parquet: bool
    first: int  # the number of the first row (2: a CSV's line after its header)
    word: str  # "line" or "row"


def _cache(e: Encoding) -> Path:
    """The cache file of these files encoded as `features`: reused where it exists, else
    built (second pass), with the free disk space checked first."""
    p, files, features, found, stats = e.p, e.files, e.features, e.found, e.stats

    identity = {
        "format": FORMAT,
        "files": stats,
        "features": [f.model_dump() for f in features],
        "fill": p.fill,
    }
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]
    # absolute and normal, as np.memmap names the file it maps (NOTES is keyed by that name)
    folder = Path(os.path.normpath(cache_folder().absolute())) / "tables"
    prefix = source_prefix(files["train"][0])
    target = folder / f"{prefix}{digest}.npy"
    width, n = sum(len(f.columns) for f in features), sum(found.rows.values())
    if _whole(target, n * width):
        return target
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NncliError(
            f"the cache folder {folder} cannot be made ({exc.strerror}); set NNCLI_CACHE to a "
            "folder you can write"
        ) from None
    # one builder at a time: the others (a sweep's trials) wait, then reuse its file
    with waited(folder.parent / ".tables.lock"):
        if _whole(target, n * width):
            return target
        tidy(folder, target, prefix)
        _build(e, target)
    tidy(folder, target, prefix)  # the older caches of this file
    hold(target)
    return target


def _stats(files: dict[str, tuple[Path, str]]) -> list[list[Any]]:
    """Each file's resolved path, size and modification time: what names its cache."""
    stats = []
    for path, _ in files.values():
        st = path.stat()
        stats.append([str(path.resolve()), st.st_size, st.st_mtime_ns])
    return stats


def _changed(path: Path, key: str, how: str) -> NncliError:
    return NncliError(
        f"{key}: {path} changed while it was read ({how}), so it was not cached; run "
        "again once it is no longer being written"
    )


def _whole(target: Path, values: int) -> bool:
    """Whether the cache file `target` is there, whole (and so reused, and held)."""
    if not (target.is_file() and target.stat().st_size >= values * 4):
        return False
    NOTES[str(target)] = f"cache {target} reused ({size_text(target.stat().st_size)})"
    hold(target)
    return True


def _build(e: Encoding, target: Path) -> None:
    """The second pass: each file's chunks encoded into `target`, with the free disk space
    checked first, written under a temporary name and renamed (whole or absent)."""
    import numpy as np

    files, features, found = e.files, e.features, e.found

    folder = target.parent
    width, n = sum(len(f.columns) for f in features), sum(found.rows.values())
    started = time.monotonic()
    try:
        free = shutil.disk_usage(folder).free
    except OSError as exc:
        raise NncliError(
            f"the cache folder {folder} cannot be read ({exc.strerror}); set NNCLI_CACHE to a "
            "folder you can write"
        ) from None
    need = n * width * 4 + 128
    if need > free:
        raise NncliError(
            f"streaming {files['train'][0]} needs its {n:,} rows encoded in a cache file of "
            f"{size_text(need)}, but {folder} has {size_text(free)} free; free space there, or "
            "set NNCLI_CACHE to a folder on a larger disk (NNCLI_CACHE=/path/to/big/disk)"
        )
    temporary = folder / f".{target.name}.{os.getpid()}.{time.monotonic_ns()}.tmp"
    try:
        with temporary.open("wb") as out:
            header = {"descr": "<f4", "fortran_order": False, "shape": (n, width)}
            np.lib.format.write_array_header_1_0(out, header)
            for split_name, (path, key) in files.items():
                done, text = 0, found.mixed.get(split_name, set())
                names, rows = [f.name for f in features], found.rows[split_name]
                for chunk in chunks(path, key, names, e.is_parquet, text, "encoding", rows):
                    where = partial(lines, first=e.first + done, word=e.word)
                    x: NDArray[Any] = encode(
                        chunk, features, e.p.fill, str(path), where, "mean (or zero)"
                    )
                    out.write(np.ascontiguousarray(x, dtype="<f4").tobytes())
                    done += len(chunk)
                if done != found.rows[split_name]:
                    raise _changed(path, key, f"{found.rows[split_name]:,} rows, then {done:,}")
            for (path, key), was, now in zip(files.values(), e.stats, _stats(files), strict=True):
                if now != was:
                    raise _changed(path, key, "its size or modification time changed")
            out.flush()
            os.fsync(out.fileno())
        temporary.replace(target)  # whole or absent; two builders leave one whole file
    except OSError as exc:
        raise NncliError(
            f"the cache file {target} cannot be written ({exc.strerror}); set NNCLI_CACHE to "
            "a folder with room"
        ) from None
    finally:
        temporary.unlink(missing_ok=True)
    took = time.monotonic() - started
    NOTES[str(target)] = f"cache {target} built ({size_text(need)} in {took:.1f} s)"
