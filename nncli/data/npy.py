"""`source: npy`: inputs and targets in two .npy files, opened memory-mapped; inputs too
large for memory stay in their file and are read batch by batch (`data.stream`), with the
train split's statistics fitted in chunks (`fit_streamed`). `DiskSource` is what a streamed
split reads its rows from (`NpyRows` here, image files in `data.images`)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import Field

from nncli.data import Dataset, FileParams, LossTarget, PathText, datasets, task_field
from nncli.data.preprocess import RANGE, Preprocessing, TargetKind, numbered, shown_values
from nncli.errors import NncliError, first_line
from nncli.inputs import available_memory, check_memory, regular_size, size_text

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

CHUNK_BYTES = 64 * 2**20  # statistics are summed over chunks of about this many bytes
GAP_BYTES = 64 * 2**10  # rows read closer than this are read in one call, the gap with them
WILLNEED = getattr(os, "POSIX_FADV_WILLNEED", 3)
# a file memory-mapped as a dataset's x -> what its rows are read as, where they are not
# simply an .npy's rows (a streamed table's cache file: data/tablestream.TableRows)
SOURCES: dict[str, DiskSource] = {}


class Streamable(FileParams):
    """A file source whose inputs can stay on disk, read batch by batch by workers."""

    stream: Literal["auto"] | bool = Field(
        default="auto",
        description="read batches from disk (auto: when the inputs as float32 do not fit "
        "in the memory available)",
    )
    workers: int = Field(default=0, ge=0, le=64, description="DataLoader worker processes")


Shuffle = Annotated[
    Literal["chunks", "rows"],
    Field(
        description="a streamed epoch's order: chunks (of about 256 kB of adjacent rows, in a "
        "random order, rows shuffled within 4 chunks: sequential reads) or rows (every row "
        "at random, as in memory: random reads); in memory it is always rows",
    ),
]


class Npy(Streamable):
    path_fields: ClassVar[tuple[str, ...]] = ("x", "y")

    x: PathText = Field(description="the .npy file of inputs, (N, ...)")
    y: PathText = Field(description="the .npy file of targets, (N,) or (N, T)")
    task: TargetKind | None = task_field()
    standardize: bool = Field(
        default=False, description="zero mean, unit variance per feature (train split stats)"
    )
    shuffle: Shuffle = "chunks"

    def missing_files(self) -> list[NncliError]:
        """What loading would refuse from the files' headers alone (for validate): a file
        that is missing or no .npy, inputs that are not numbers, row counts that differ,
        samples that data.shape does not hold."""
        found = super().missing_files()
        if found:
            return found
        try:
            headers = {key: npy_header(Path(getattr(self, key)), key) for key in ("x", "y")}
            check_headers(self, headers["x"], headers["y"])
        except NncliError as exc:
            return [exc]
        return []


def npy_header(path: Path, key: str) -> tuple[tuple[int, ...], np.dtype[Any]]:
    """The shape and dtype an .npy file's header declares (nothing else is read); NncliError
    at `data.KEY` for a file that is no .npy, holds objects or is shorter than declared."""

    from nncli.data.npz import read_header

    what = f"data.{key}: {path}"
    size = regular_size(path, what)
    try:
        with path.open("rb") as f:
            shape, fortran, dtype = read_header(f)
            offset = f.tell()
    except (OSError, ValueError, EOFError) as exc:
        raise NncliError(
            f"{what} is not an .npy file ({first_line(exc)}); save the array with numpy.save",
            key=f"data.{key}",
        ) from None
    if dtype.hasobject or dtype.kind not in "biuf" + ("US" if key == "y" else ""):
        kinds = "numbers" if key == "x" else "numbers or text labels"
        raise NncliError(
            f"{what} holds {dtype} values; data.{key} must hold {kinds}", key=f"data.{key}"
        )
    if fortran:
        raise NncliError(
            f"{what} is stored in Fortran order; save it as numpy.ascontiguousarray(a)",
            key=f"data.{key}",
        )
    needed = offset + math.prod(shape) * dtype.itemsize
    if size < needed:
        raise NncliError(
            f"{what} is truncated: its header declares {'x'.join(map(str, shape))} {dtype} "
            f"values ({needed:,} bytes) but the file has {size:,} bytes",
            key=f"data.{key}",
        )
    return tuple(shape), dtype


def check_headers(p: Npy, x: tuple[tuple[int, ...], Any], y: tuple[tuple[int, ...], Any]) -> None:
    """The two arrays' shapes against each other and against data.shape."""
    (xs, _), (ys, _) = x, y
    if len(xs) < 2 or xs[0] == 0:
        raise NncliError(
            f"data.x: {p.x} is shaped {xs}; it must hold rows of numbers (samples, features...)",
            key="data.x",
        )
    if len(ys) not in (1, 2) or ys[0] != xs[0]:
        raise NncliError(
            f"data.y: {p.y} is shaped {ys} but {p.x} has {xs[0]:,} rows; the targets must be "
            f"(N,) or (N, T) with N = {xs[0]:,}, one row per row of data.x",
            key="data.y",
        )
    width = math.prod(xs[1:])
    if p.shape is not None and math.prod(p.shape) != width:
        raise NncliError(
            f"data.shape {p.shape} holds {math.prod(p.shape)} values but each sample of "
            f"{p.x} has {width} ({'x'.join(map(str, xs[1:]))})",
            key="data.shape",
        )


def streams(p: Streamable, values: int) -> bool:
    """Whether the inputs stay on disk: as data.stream says, or (auto) where their `values`
    would not fit in memory as float32 (the array and the split tensors made from it)."""
    if p.stream != "auto":
        return bool(p.stream)
    free = available_memory()
    return free is not None and values * 4 * 2 > free


class DiskSource:
    """Rows left on disk, read by number: what a streamed split (engine/batches) reads."""

    row_bytes: int  # the bytes one row takes on disk (chunks and sizes are counted in them)
    what: str = "data.x"  # what a message names: the key, and the file where there is one

    def named(self, rows: NDArray[np.int64]) -> tuple[str, str]:
        """What a message names for the (sorted) row numbers `rows`: the key and file, and
        the rows (`rows 3, 7`)."""
        return self.what, numbered(rows)

    def read(self, rows: NDArray[np.int64]) -> NDArray[Any]:
        """The rows `rows` (in the order given) as flat values before preprocessing: float32,
        or bytes (uint8) where the source holds them (an image's pixels)."""
        raise NotImplementedError


@dataclass(frozen=True)
class NpyRows(DiskSource):
    """The rows of an .npy file's array, read by `pread`."""

    file: str
    offset: int
    dtype: str
    width: int  # values a row

    @property
    def row_bytes(self) -> int:  # type: ignore[override]
        import numpy as np

        return self.width * np.dtype(self.dtype).itemsize

    @property
    def what(self) -> str:  # type: ignore[override]
        return f"data.x: {self.file}"

    def read(self, rows: NDArray[np.int64]) -> NDArray[Any]:
        return read_rows(self.file, self.offset, self.dtype, self.width, rows)


def check_finite(values: NDArray[np.float32], rows: NDArray[np.int64], source: DiskSource) -> None:
    """Refuse NaN and infinite values (the in-memory path checks every row before training)
    among streamed rows as prepared (a missing value that data.fill fills is no longer one),
    naming their row numbers `rows`: the run stops, and resumes once they are fixed."""
    import numpy as np

    finite = np.isfinite(values)
    if not finite.all():
        bad = ~finite
        what, where = source.named(np.sort(rows[bad.reshape(len(rows), -1).any(axis=1)]))
        raise NncliError(
            f"{what} holds {shown_values(values[bad])} on {where} (a streamed file's "
            f"rows are checked as they are read); inputs must be {RANGE}: fix those rows (a "
            "run they stopped can then be resumed)"
        )


def source_of(x: Any) -> DiskSource:
    """What a streamed dataset's inputs are read from: its memory-mapped file, or `x`."""
    import numpy as np

    if isinstance(x, DiskSource):
        return x
    assert isinstance(x, np.memmap) and x.filename is not None
    if str(x.filename) in SOURCES:
        return SOURCES[str(x.filename)]
    return NpyRows(str(x.filename), x.offset, x.dtype.str, math.prod(x.shape[1:]))


def on_disk(x: Any) -> bool:
    """Whether a dataset's inputs stay on disk (streamed), not rows in memory."""
    import numpy as np

    return isinstance(x, (np.memmap, DiskSource))


@datasets.register("npy", params=Npy)
def npy(p: Npy, seed: int, loss_target: LossTarget | None = None) -> Dataset:
    """NumPy .npy files: inputs (N, ...) in `x`, targets (N,) or (N, T) in `y`, memory-mapped;
    inputs too large for memory are streamed from disk (data.stream)."""
    import numpy as np

    from nncli.data.npz import array_targets, check_numbers

    headers = {key: npy_header(Path(getattr(p, key)), key) for key in ("x", "y")}
    check_headers(p, headers["x"], headers["y"])
    x_path, y_path = Path(p.x), Path(p.y)
    try:
        x = np.load(x_path, mmap_mode="r", allow_pickle=False)
        y_map = np.load(y_path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise NncliError(f"{p.x} cannot be read as .npy: {first_line(exc)}") from None
    check_memory(f"data.y: {y_path}", y_map.nbytes * 2, "use a smaller file")
    y = np.array(y_map)  # the targets are small: in memory
    if not streams(p, x.size):
        check_memory(f"data.x: {x_path} ({size_text(x.nbytes)})", x.size * 8, "set stream: true")
        x = np.array(x)
        check_numbers(x_path, "x", x, labels=False)
    y, task, class_names, targets = array_targets(
        {"train": y}, {"train": y_path}, "y", p.task, loss_target
    )
    return Dataset(x, y, task, class_names, target_names=targets)


def fit_streamed(pre: Preprocessing, x: Any, train: NDArray[np.int64]) -> Preprocessing:
    """`pre.fit` for inputs on disk, from the train rows read in chunks in file order, never
    all in memory at once: the fill values (`mean`: NaN-skipping sums and counts; `median`
    cannot be combined from chunks, so sources refuse it before streaming), then the mean
    and standard deviation of the filled rows, combined in float64 (Chan's pairwise update);
    one-hot columns keep mean 0 and std 1, as `pre.fit` keeps them."""
    import numpy as np

    if pre.fill is None and not pre.standardize:
        return pre
    rows = np.sort(train)
    source = source_of(x)
    step = max(1, CHUNK_BYTES // max(1, source.row_bytes))
    parts = [rows[lo : lo + step] for lo in range(0, len(rows), step)]
    if pre.fill is not None:
        width = len(pre.columns)
        sums, counts = np.zeros(width), np.zeros(width)
        if pre.fill == "mean":
            for part in parts:
                chunk = source.read(part)
                sums += np.nansum(chunk, axis=0, dtype=np.float64)
                counts += (~np.isnan(chunk)).sum(axis=0)
        with np.errstate(all="ignore"):
            means = sums / counts
        # a column empty in every train row: nothing to learn from, so zero
        pre = pre.model_copy(update={"fill_values": np.nan_to_num(means, nan=0.0).tolist()})
    if not pre.standardize:
        return pre
    count, mean, m2 = 0, np.float64(0), np.float64(0)  # arrays of the width once added
    for part in parts:
        done = pre._filled_scaled(source.read(part), overwrite=True)
        check_finite(done, part, source)
        chunk = done.astype(np.float64)
        k, mu = len(chunk), chunk.mean(axis=0)
        delta = mu - mean
        total = count + k
        mean = mean + delta * (k / total)
        m2 = m2 + ((chunk - mu) ** 2).sum(axis=0) + delta**2 * (count * k / total)
        count = total
    mu, sd = np.array(mean, dtype=np.float64), np.sqrt(m2 / max(count, 1))
    sd[sd < 1e-12] = 1.0  # a constant column stays constant, as pre.fit keeps it
    onehot = np.array([f.categories is not None for f in pre.features for _ in f.columns])
    if onehot.any():
        mu[onehot], sd[onehot] = 0.0, 1.0
    return pre.model_copy(update={"mean": mu.tolist(), "std": sd.tolist()})


def read_rows(
    file: str, offset: int, dtype: str, width: int, rows: NDArray[np.int64]
) -> NDArray[Any]:
    """The file rows `rows` (of `width` values of `dtype`, from byte `offset`) as flat
    float32 (bytes, uint8, as they are: a quarter of the size where they cross from a
    worker), in the order given: read in file order, rows less than GAP_BYTES apart in one
    `pread` with what lies between (a chunk-shuffled batch reads its window of the file in
    one call, not a call a row), then put back in the order asked for. (Reads, not a memory
    map: faulting a mapped file reads ahead around every row, and where memory is short that
    readahead evicts itself: 276 rows/s against 11,600 in a cgroup of half the file.)"""
    import numpy as np

    order = np.argsort(rows, kind="stable")
    wanted = rows[order]
    size = width * np.dtype(dtype).itemsize
    kept = np.uint8 if np.dtype(dtype) == np.uint8 else np.float32
    flat = np.empty((len(rows), width), dtype=kept)
    cuts = np.flatnonzero(np.diff(wanted) > 1 + GAP_BYTES // size) + 1
    starts, ends = np.concatenate(([0], cuts)), np.concatenate((cuts, [len(wanted)]))
    spans = [
        (lo, hi, int(wanted[lo]), int(wanted[hi - 1]) + 1)
        for lo, hi in zip(starts.tolist(), ends.tolist(), strict=True)
    ]
    fd = os.open(file, os.O_RDONLY)
    try:
        # every read of the batch announced first, so the disk serves them together rather
        # than one after another (cold, in the cgroup above: 47,000 rows/s, not 14,500)
        if hasattr(os, "posix_fadvise"):
            for _, _, first, end in spans:
                os.posix_fadvise(fd, offset + first * size, (end - first) * size, WILLNEED)
        for lo, hi, first, end in spans:
            span = np.empty((end - first, width), dtype=np.dtype(dtype))
            if os.preadv(fd, [span.data.cast("B")], offset + first * size) != span.nbytes:
                raise NncliError(f"{file} is shorter than when the run started; was it changed?")
            # each row once, straight to its place in the order asked for
            flat[order[lo:hi]] = span[wanted[lo:hi] - first]
    finally:
        os.close(fd)
    return flat


def read_npy(path: Path, keys: dict[str, str]) -> dict[str, NDArray[Any]]:
    """An .npy file given to predict: its one array as the inputs (`keys["x_key"]`); a file
    of inputs holds no targets, so asking for `y_key` too is an error."""
    import numpy as np

    if "y_key" in keys:
        raise NncliError(
            f"{path} is one array (inputs only); to evaluate on new rows give a .npz file "
            f"with arrays '{keys['x_key']}' and '{keys['y_key']}', or a CSV"
        )
    shape, dtype = npy_header(path, "x")
    check_memory(str(path), math.prod(shape) * (dtype.itemsize + 4), "predict on fewer rows")
    try:
        return {"x_key": np.load(path, allow_pickle=False)}
    except (OSError, ValueError) as exc:
        raise NncliError(f"{path} cannot be read as .npy: {first_line(exc)}") from None
