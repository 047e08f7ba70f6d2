"""`source: npz`: NumPy .npz arrays, read into one float32 array a chunk at a time and
checked as they are read; the targets' handling the npy source shares (array_targets)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
    task_field,
)
from nncli.data.preprocess import (
    NOT_LABELS,
    RANGE,
    lines,
    not_labels,
    out_of_range,
    shown_values,
)
from nncli.errors import NncliError, first_line
from nncli.inputs import check_memory, regular_size

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray


class Npz(SplitFiles):
    path: PathText = Field(description="the .npz file (its train rows, where val/test files exist)")
    x_key: str = Field(default="x", min_length=1, description="the array of inputs, (N, ...)")
    y_key: str = Field(
        default="y", min_length=1, description="the array of targets, (N,) or (N, T)"
    )
    task: TargetKind | None = task_field()
    standardize: bool = Field(
        default=False, description="zero mean, unit variance per feature (train split stats)"
    )
    val_path: PathText | None = Field(default=None, description="validation rows (for split.val)")
    test_path: PathText | None = Field(default=None, description="test rows (for split.test)")


def read_npz(
    path: Path, keys: dict[str, str], sized: dict[str, str] | None = None
) -> dict[str, NDArray[Any]]:
    """The arrays `keys` (field -> array name) of an .npz file; nothing is unpickled, and
    arrays larger than the memory available are refused from their headers, unread. The
    arrays `sized` must be there too and fit in memory beside them, but are left unread."""
    import zipfile

    import numpy as np

    regular_size(path, str(path))  # not a folder, a device or a pipe
    try:
        with np.load(path, allow_pickle=False) as archive:
            for key, name in {**(sized or {}), **keys}.items():
                if name not in archive.files:
                    raise NncliError(
                        f"{path} has no array '{name}' (data.{key}); its arrays: "
                        f"{', '.join(archive.files) or 'none'}"
                    )
            _check_sizes(path, archive.zip, {**(sized or {}), **keys})
            arrays = {key: archive[name] for key, name in keys.items()}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        first = first_line(exc)
        raise NncliError(f"{path} cannot be read as .npz arrays: {first}") from None
    return arrays


def _check_sizes(path: Path, archive: Any, keys: dict[str, str]) -> None:
    """From the arrays' headers: arrays that would not fit in memory are refused unread (a
    few kB of compressed zeros can unpack to gigabytes)."""
    total = 0
    for name in keys.values():
        with archive.open(f"{name}.npy") as f:
            shape, _, dtype = read_header(f)
        total += math.prod(shape) * (dtype.itemsize + 4)  # the array and its float32 copy
    check_memory(f"{path} ({', '.join(keys.values())})", total, "use a smaller file")


def read_header(f: Any) -> tuple[tuple[int, ...], bool, np.dtype[Any]]:
    """The shape, Fortran order and dtype of the .npy file open at `f`'s start; `f` is
    left at the first byte of the values."""
    import numpy as np

    version = np.lib.format.read_magic(f)
    read = (
        np.lib.format.read_array_header_1_0
        if version == (1, 0)
        else np.lib.format.read_array_header_2_0
    )
    shape, fortran, dtype = read(f)
    return tuple(shape), bool(fortran), dtype


_CHUNK_BYTES = 16 * 2**20  # what a read of rows holds beside the destination


def _read_inputs(path: Path, name: str, out: NDArray[np.float32]) -> None:
    """Read the .npz array `name` (already checked from its header to fit `out`'s rows)
    into `out` as float32, a chunk of rows at a time: no second copy of the inputs, and
    NaN, infinite values and values beyond float32 refused, naming their rows."""
    import zipfile

    import numpy as np

    try:
        shown, bad = _copy_inputs(path, name, out)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise NncliError(f"{path} cannot be read as .npz arrays: {first_line(exc)}") from None
    if shown:
        values = np.concatenate(shown)
        where = lines(bad, first=0, word="row")
        raise NncliError(
            f"{path}: '{name}' holds {shown_values(values)} on {where}; inputs and targets "
            f"must be {RANGE}"
        )


def _copy_inputs(
    path: Path, name: str, out: NDArray[np.float32]
) -> tuple[list[NDArray[Any]], NDArray[np.bool_]]:
    """_read_inputs' reading: the first bad values of each chunk, and the bad rows."""
    import numpy as np

    bad = np.zeros(len(out), dtype=bool)
    shown: list[NDArray[Any]] = []
    with np.load(path, allow_pickle=False) as archive, archive.zip.open(f"{name}.npy") as f:
        shape, fortran, dtype = read_header(f)
        width = math.prod(shape[1:])
        chunks: Iterable[tuple[int, NDArray[Any]]]
        if fortran or dtype.hasobject:  # rows are not contiguous: numpy reads it whole
            chunks = [(0, archive[name].reshape(len(out), width))]
        else:
            step = max(1, _CHUNK_BYTES // max(1, width * dtype.itemsize))
            chunks = _row_chunks(f, dtype, len(out), width, step)
        for lo, rows in chunks:
            if dtype.kind == "f":
                flags = np.isnan(rows) | out_of_range(rows)
                if flags.any():
                    bad[lo : lo + len(rows)] = flags.any(axis=1)
                    shown.append(np.unique(rows[flags])[:3])
            if shown:  # refused when read through; no cast of values float32 cannot hold
                continue
            out[lo : lo + len(rows)] = rows.reshape(len(rows), *out.shape[1:])
    return shown, bad


def _row_chunks(
    f: Any, dtype: np.dtype[Any], n: int, width: int, step: int
) -> Iterator[tuple[int, NDArray[Any]]]:
    """Rows of an .npy file's values (C order) open at `f`, `step` rows at a time."""
    import numpy as np

    for lo in range(0, n, step):
        count = min(step, n - lo) * width
        data = f.read(count * dtype.itemsize)
        if len(data) != count * dtype.itemsize:
            raise EOFError(f"the array ends after {lo} rows of {n}")
        yield lo, np.frombuffer(data, dtype=dtype).reshape(-1, width)


def check_numbers(path: Path, name: str, values: NDArray[Any], labels: bool) -> None:
    """Refuse NaN, infinite values and values beyond float32 (and, for class `labels`,
    fractions), naming their rows."""
    import numpy as np

    if values.dtype.kind != "f":
        return
    rows = values.reshape(len(values), -1)
    bad = np.isnan(rows) | (not_labels(rows) if labels else out_of_range(rows))
    if bad.any():
        what = f": {NOT_LABELS}" if labels else f"; inputs and targets must be {RANGE}"
        where = lines(bad.any(axis=1), first=0, word="row")
        raise NncliError(f"{path}: '{name}' holds {shown_values(rows[bad])} on {where}{what}")


def _npz_layout(path: Path, p: Npz) -> tuple[tuple[int, ...], NDArray[Any]]:
    """The shape of a file's inputs, from their header (checked: numbers, rows, the
    memory they need), and its targets, read."""
    import zipfile

    import numpy as np

    arrays = read_npz(path, {"y_key": p.y_key}, sized={"x_key": p.x_key})
    y = arrays["y_key"]
    try:
        with zipfile.ZipFile(path) as archive, archive.open(f"{p.x_key}.npy") as f:
            shape, _, dtype = read_header(f)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise NncliError(f"{path} cannot be read as .npz arrays: {first_line(exc)}") from None
    if dtype.kind not in "biuf" or len(shape) < 2:
        raise NncliError(
            f"{path}: '{p.x_key}' must hold numbers shaped (samples, features...), "
            f"got {dtype} {shape}"
        )
    if y.ndim not in (1, 2) or len(y) != shape[0]:
        raise NncliError(
            f"{path}: '{p.y_key}' must be (N,) or (N, T) with N = {shape[0]} rows of "
            f"'{p.x_key}', got shape {y.shape}"
        )
    if shape[0] == 0:
        raise NncliError(f"{path}: '{p.x_key}' has no rows")
    return shape, np.asarray(y)


@datasets.register("npz", params=Npz)
def npz(p: Npz, seed: int, loss_target: LossTarget | None = None) -> Dataset:
    """NumPy .npz arrays: inputs (N, ...) and targets (N,) or (N, T), keys x and y.

    The inputs of every file are read into one float32 array, a chunk at a time (the
    arrays of the files and a stacked copy would hold them twice)."""
    import numpy as np

    files = {split_name: path for split_name, (path, _) in p.split_files().items()}
    shapes: dict[str, tuple[int, ...]] = {}
    ys: dict[str, NDArray[Any]] = {}
    for split_name, path in files.items():
        shape, y = _npz_layout(path, p)
        if shapes and shape[1:] != shapes["train"][1:]:
            raise NncliError(
                f"{path}: samples are {shape[1:]} but {files['train']} has {shapes['train'][1:]}"
            )
        shapes[split_name], ys[split_name] = shape, y
    x = np.empty((sum(s[0] for s in shapes.values()), *shapes["train"][1:]), dtype=np.float32)
    given: dict[str, NDArray[np.int64]] = {}
    start = 0
    for split_name, path in files.items():
        n = shapes[split_name][0]
        _read_inputs(path, p.x_key, x[start : start + n])
        if split_name != "train":
            given[split_name] = np.arange(start, start + n, dtype=np.int64)
        start += n
    y, task, class_names, targets = array_targets(ys, files, p.y_key, p.task, loss_target)
    return Dataset(x, y, task, class_names, target_names=targets, given=given)


def array_targets(
    ys: dict[str, NDArray[Any]],
    files: dict[str, Path],
    y_key: str,
    task: TargetKind | None,
    loss_target: LossTarget | None,
) -> tuple[NDArray[Any], TargetKind, list[str] | None, list[str]]:
    """The splits' targets (train first), checked, as one array of class indices or float
    rows; with the task, class names and target names (the npz and npy sources')."""
    import numpy as np

    y_train = ys["train"]
    n_targets = 1 if y_train.ndim == 1 else y_train.shape[1]
    task = resolve_task(task, loss_target, n_targets)
    if task is None:  # without a loss to ask: whole numbers or text are classes
        whole = y_train.dtype.kind in "biuUS" or bool(np.all(np.mod(y_train, 1) == 0))
        task = ("multilabel" if n_targets > 1 else "classification") if whole else "regression"
    for split_name, y in ys.items():
        check_numbers(files[split_name], y_key, y, labels=task == "classification")
    y_parts = list(ys.values())
    class_names = None
    if task == "classification":
        if n_targets != 1:
            raise NncliError(
                f"{files['train']}: '{y_key}' has {n_targets} columns but a classification "
                "loss takes one label per row; for 0/1 labels use loss: bce_with_logits"
            )
        labels = np.concatenate([y.reshape(len(y)) for y in y_parts])
        y, class_names = encode_labels(labels, f"'{y_key}' of {files['train']}")
    elif y_train.dtype.kind in "US":
        raise NncliError(f"{files['train']}: '{y_key}' holds text; a {task} target needs numbers")
    else:
        y = np.concatenate([v.reshape(len(v), -1) for v in y_parts]).astype(np.float32)
        if task == "multilabel":
            if not np.isin(y, (0.0, 1.0)).all():
                raise NncliError(f"{files['train']}: multi-label '{y_key}' must hold 0/1 only")
            y = y.astype(np.int64)
            class_names = [f"label{i + 1}" for i in range(y.shape[1])]
    targets = class_names if task == "multilabel" else None
    if task == "regression":
        targets = ["y"] if y.shape[1] == 1 else [f"y{i + 1}" for i in range(y.shape[1])]
    return y, task, class_names, targets or [y_key]
