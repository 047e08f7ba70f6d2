"""A trained run's inputs (and targets) read from a CSV or .npz file, encoded as its data
was in training: what predict and eval feed the model."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nncli.data.labels import label_strings
from nncli.data.npy import read_npy
from nncli.data.npz import read_npz
from nncli.data.parquet import read_table, where_of
from nncli.data.preprocess import Preprocessing, encode, lines
from nncli.errors import NncliError
from nncli.inputs import read_csv

if TYPE_CHECKING:
    import pandas as pd
    from numpy.typing import NDArray

    from nncli.trained.load import TrainedRun


def is_npz(path: Path) -> bool:
    return path.suffix.lower() == ".npz"


def is_npy(path: Path) -> bool:
    return path.suffix.lower() == ".npy"


def npz_rows(
    t: TrainedRun, path: Path, targets: bool
) -> tuple[NDArray[np.float32], NDArray[Any] | None]:
    """Inputs (and with `targets`, targets) of a .npz file for a run of numeric inputs, read
    from the arrays the run's data named (x and y by default) and prepared as in training:
    each sample's numbers in the order of the run's inputs (for a CSV-trained run, its
    columns' order)."""
    encoded = [f.name for f in t.pre.features if f.categories is not None]
    if encoded:
        raise NncliError(
            f"{path}: {t.folder} one-hot encodes the text column(s) "
            f"{', '.join(repr(c) for c in encoded)}; give its rows as a CSV with the columns "
            f"{_first_names(t.pre.input_names)}"
        )
    keys = {"x_key": str(getattr(t.spec.data, "x_key", "x"))}
    if targets:
        keys["y_key"] = str(getattr(t.spec.data, "y_key", "y"))
    arrays = read_npy(path, keys) if is_npy(path) else read_npz(path, keys)
    x_raw, x_key = arrays["x_key"], keys["x_key"]
    width = len(t.pre.columns)
    if x_raw.dtype.kind not in "biuf" or x_raw.ndim < 1 or x_raw[:1].size != width:
        if x_raw.ndim >= 1 and len(x_raw) == 0:
            raise NncliError(f"{path}: '{x_key}' has no rows")
        order = (
            f" in the order of its columns {_first_names(t.pre.input_names)}"
            if t.pre.source == "csv"
            else ""
        )
        one = (
            f"; for one sample, save x[None] (shaped (1, {width}))"
            if x_raw.ndim == 1 and x_raw.size == width
            else ""
        )
        raise NncliError(
            f"{path}: '{x_key}' is {x_raw.dtype} shaped {x_raw.shape}; {t.folder} takes "
            f"samples of {width} numbers (shaped {tuple(t.pre.shape)}){order}, one per row{one}"
        )
    flat = x_raw.reshape(len(x_raw), width)
    bad = ~np.isfinite(flat) if t.pre.fill is None else np.isinf(flat)
    if bad.any():
        which = "NaN or infinite values" if t.pre.fill is None else "infinite values"
        fix = "; the run has no data.fill to fill NaN" if t.pre.fill is None else ""
        raise NncliError(
            f"{path}: '{x_key}' holds {which} on {_rows(bad.any(axis=1))}{fix}; give finite numbers"
        )
    x = t.pre.transform(flat.astype(np.float32))
    if not targets:
        return x, None
    import pandas as pd

    y_all, y_key = arrays["y_key"], keys["y_key"]
    n_targets = len(t.pre.targets)
    if y_all.ndim == 0 or len(y_all) != len(x) or y_all[:1].size not in (0, n_targets):
        raise NncliError(
            f"{path}: '{y_key}' is shaped {y_all.shape}; the run needs {len(x)} rows of "
            f"{n_targets} target(s), one row per row of '{x_key}'"
        )
    y_raw = y_all.reshape(len(y_all), n_targets)
    frame = pd.DataFrame({name: y_raw[:, i] for i, name in enumerate(t.pre.targets)})
    return x, encode_targets(frame, t.pre, str(path), array=y_key)


def image_rows(t: TrainedRun, paths: list[Path]) -> tuple[list[Path], NDArray[np.float32]]:
    """The images of `paths` (files, and the image files under folders) for a run trained on
    `source: images`, decoded and prepared as in training (by its data.workers); any that
    cannot be read refuse them all, named."""
    from nncli.data.imagefiles import bad_files_text, decode_all, image_files
    from nncli.data.images import Images

    p = t.spec.data
    assert isinstance(p, Images)
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = image_files(path, p.extensions)
            if not found:
                raise NncliError(f"{path} holds no images ({', '.join(p.extensions)})")
            files += found
        elif path.exists():
            files.append(path)
        else:
            raise NncliError(f"{path} does not exist; name image files or folders of them")
    size = (p.size[0], p.size[1])
    pixels, bad = decode_all(files, size, p.crop, p.channels, "the images", p.workers)
    if bad:
        raise NncliError(f"{bad_files_text(bad, len(files))}; fix or leave them out")
    return files, t.pre.transform(pixels.reshape(len(files), -1).astype(np.float32))


def _first_names(names: list[str], shown: int = 5) -> str:
    return ", ".join(names[:shown]) + (", ..." if len(names) > shown else "")


def _rows(flags: NDArray[np.bool_]) -> str:
    """`rows 0, 4 and 2 more`: rows of an array, counted from 0."""
    return lines(flags, first=0, word="row")


def sequence_rows(
    t: TrainedRun, path: Path, key: str, targets: bool
) -> tuple[pd.DataFrame, NDArray[np.float32], NDArray[Any] | None] | None:
    """A timeseries' or text run's rows of `path` (None for other runs): the rows predict
    shows (a timeseries: the row ending each window, whose forecast it is), the prepared
    inputs and, with `targets`, the targets (a timeseries: of the windows whose target row
    is in the file)."""
    from nncli.data.text import token_rows
    from nncli.data.timeseries import read_series, series_rows

    pre = t.pre
    if pre.series is not None:
        s = pre.series
        wanted = [*s.columns, *([s.date] if s.date else []), *(pre.targets if targets else [])]
        frame = read_series(path, key, list(dict.fromkeys(wanted)))
        if targets:
            _has_targets(frame, pre, path)
        x, y = series_rows(s, pre.targets if targets else None, frame, path)
        return (
            frame.iloc[s.window - 1 :],
            pre.transform(x),
            None if y is None else pre.scale_targets(y),
        )
    if pre.text is None:
        return None
    if is_npz(path):
        raise NncliError(
            f"{path}: {t.folder} reads text; give its rows as a CSV with the column "
            f"'{pre.text.column}'"
        )
    frame = read_csv(path, key)
    x = pre.transform(token_rows(pre.text, frame, path))
    if not targets:
        return frame, x, None
    _has_targets(frame, pre, path)
    return frame, x, encode_targets(frame, pre, str(path))


def _has_targets(frame: pd.DataFrame, pre: Preprocessing, path: Path) -> None:
    absent = [c for c in pre.targets if c not in frame.columns]
    if absent:
        listed = ", ".join(repr(c) for c in absent)
        raise NncliError(f"{path} lacks target column(s) {listed} to evaluate against")


def file_rows(t: TrainedRun, path: Path) -> tuple[NDArray[np.float32], NDArray[Any]]:
    """Inputs and targets of a labelled file, encoded as the run's data was."""
    sequences = sequence_rows(t, path, "--data", targets=True)
    if sequences is not None:
        _, x, y = sequences
        assert y is not None
        return x, y
    if is_npz(path) or is_npy(path):
        x, y = npz_rows(t, path, targets=True)
        assert y is not None
        return x, y
    frame = read_table(path, "--data")  # a CSV, or a Parquet file by its suffix
    _has_targets(frame, t.pre, path)
    x = t.pre.transform(encode(frame, t.pre.features, t.pre.fill, str(path), where_of(path)))
    return x, encode_targets(frame, t.pre, str(path))


def encode_targets(
    frame: pd.DataFrame, pre: Preprocessing, file: str, array: str | None = None
) -> NDArray[Any]:
    """The target columns of `frame` as training encoded them (labels by class name).
    Errors name a CSV's columns and lines, or the .npz file's `array` and its rows."""
    import pandas as pd

    def subject(columns: str) -> str:
        return f"'{array}' of {file}" if array else f"{columns} of {file}"

    where = _rows if array else lines
    for name in pre.targets:
        missing = frame[name].isna().to_numpy()
        if missing.any():
            raise NncliError(f"{subject(f'target column {name!r}')} is empty on {where(missing)}")
    if pre.kind == "classification":
        names = pre.class_names or []
        labels = label_strings(frame[pre.targets[0]])
        unknown = ~labels.isin(names).to_numpy()
        if unknown.any():
            sample = ", ".join(repr(v) for v in labels[unknown].unique()[:3].tolist())
            raise NncliError(
                f"{subject(f'target column {pre.targets[0]!r}')} has label(s) {sample} on "
                f"{where(unknown)} that the run does not know (its classes: {', '.join(names)})"
            )
        index = {name: i for i, name in enumerate(names)}
        return np.asarray(labels.map(index), dtype=np.int64)
    values = frame[pre.targets].apply(pd.to_numeric, errors="coerce")
    bad = values.isna().to_numpy().any(axis=1)
    if bad.any():
        raise NncliError(f"{subject('the target columns')} hold text on {where(bad)}")
    numbers: NDArray[np.float32] = np.asarray(values, dtype=np.float32)
    if pre.kind == "multilabel":
        if not np.isin(numbers, (0.0, 1.0)).all():
            raise NncliError(f"{subject('the label columns')} must hold 0/1 only")
        return np.asarray(numbers, dtype=np.int64)
    return numbers
