"""`nncli predict` and `nncli eval`: a trained run's model on new rows or on one of its
splits, through the preprocessing stored with the run (never refitted)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import nn

from nncli import data as datamod
from nncli.config.spec import Spec, load_spec
from nncli.data.files import read_npz
from nncli.data.preprocess import Preprocessing, encode, label_strings, lines, read_csv
from nncli.engine.meter import Meter
from nncli.engine.model import build_model
from nncli.engine.state import load_checkpoint
from nncli.engine.task import Task, infer_task
from nncli.engine.train import EVAL_BATCH, evaluate
from nncli.errors import NncliError
from nncli.losses import losses
from nncli.runs.files import BEST, CHECKPOINTS, CONFIG, LAST, PREPROCESSING
from nncli.runs.record import read_info

if TYPE_CHECKING:
    import pandas as pd
    from numpy.typing import NDArray

Checkpoint = Literal["best", "last"]


@dataclass
class Trained:
    """A run's model with its weights, ready to predict, and how its inputs are made."""

    run: Path
    spec: Spec
    pre: Preprocessing
    model: nn.Sequential
    task: Task
    checkpoint: Path


def load_trained(run: Path, checkpoint: Checkpoint = "best") -> Trained:
    """Rebuild a run's model from config.yaml and load a checkpoint's weights into it (the
    checkpoint is read with weights_only=True: nothing in it is executed)."""
    read_info(run)  # a clear error for a path that is not a run folder
    spec = load_spec(run / CONFIG)
    pre = Preprocessing.read(run / PREPROCESSING)
    path = run / CHECKPOINTS / (BEST if checkpoint == "best" else LAST)
    state = load_checkpoint(path)["model"]
    model, shapes = build_model(spec.model.layers, torch.zeros(2, *pre.shape))
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise NncliError(f"{path} does not fit the model of {run / CONFIG}: {first}") from None
    model.eval()
    task = infer_task(_no_rows(pre), spec.loss.name, spec.loss_info, shapes[-1])
    return Trained(run, spec, pre, model, task, path)


def _no_rows(pre: Preprocessing) -> datamod.Dataset:
    """A dataset with the run's layout and no rows: enough to infer its task."""
    width = len(pre.targets)
    y = np.zeros(0, np.int64) if pre.kind == "classification" else np.zeros((0, width))
    x = np.zeros((0, *pre.shape), np.float32)
    return datamod.Dataset(x, y, pre.kind, pre.class_names, pre.targets)


def outputs(model: nn.Module, x: NDArray[np.float32]) -> torch.Tensor:
    """The model's outputs for prepared inputs, in chunks, without gradients."""
    chunks = []
    with torch.no_grad():
        for lo in range(0, len(x), EVAL_BATCH):
            chunks.append(model(torch.as_tensor(x[lo : lo + EVAL_BATCH])).float())
    return torch.cat(chunks) if chunks else torch.zeros(0)


def probabilities(out: torch.Tensor, task: Task) -> torch.Tensor:
    """Outputs as probabilities, whatever the last layer produced."""
    if task.output == "logits":
        return out.softmax(dim=1) if task.kind == "multiclass" else out.sigmoid()
    if task.output == "log_probabilities":
        return out.exp()
    return out


def prediction_columns(t: Trained, out: torch.Tensor) -> dict[str, list[Any]]:
    """What predict adds to each row: the class label and its probability, the value of
    each target, or a 0/1 and a probability per label (multi-label)."""
    task, n = t.task, len(out)
    if task.kind == "regression":
        values = out.reshape(n, -1).numpy().astype(np.float64)
        names = t.pre.targets if values.shape[1] == len(t.pre.targets) else []
        if values.shape[1] == 1:
            return {"prediction": values[:, 0].tolist()}
        names = names or [f"y{i + 1}" for i in range(values.shape[1])]
        return {f"prediction_{name}": values[:, i].tolist() for i, name in enumerate(names)}
    prob = probabilities(out, task)
    if task.kind == "multilabel":
        chosen = (out > task.threshold).long().reshape(n, -1).numpy()
        names = task.class_names or [f"label{i + 1}" for i in range(chosen.shape[1])]
        columns: dict[str, list[Any]] = {}
        for i, name in enumerate(names):
            columns[f"prediction_{name}"] = chosen[:, i].tolist()
            columns[f"probability_{name}"] = prob[:, i].double().tolist()
        return columns
    if task.kind == "multiclass":
        index = out.argmax(dim=1)
        p = prob.gather(1, index[:, None])[:, 0]
    else:  # binary: the same cut as the metrics (0 for logits, 0.5 for probabilities)
        index = (out.reshape(n) > task.threshold).long()
        p1 = prob.reshape(n)
        p = torch.where(index == 1, p1, 1 - p1)
    names = task.class_names or [str(c) for c in range(max(task.n_outputs, 2))]
    return {
        "prediction": [names[i] for i in index.tolist()],
        "probability": p.double().tolist(),
    }


def predict_file(run: Path, input_file: Path, checkpoint: Checkpoint = "best") -> pd.DataFrame:
    """The rows of `input_file` with the run's predictions as extra columns: a CSV's rows
    as they are, or for .npz arrays a `row` column (the sample's index in the array)."""
    import pandas as pd

    t = load_trained(run, checkpoint)
    if is_npz(input_file):
        x, _ = _npz_rows(t, input_file, targets=False)
        frame = pd.DataFrame({"row": np.arange(len(x))})
    else:
        frame = read_csv(input_file, "input")
        x = t.pre.transform(encode(frame, t.pre.features, t.pre.fill, str(input_file)))
    columns = prediction_columns(t, outputs(t.model, x))
    clash = [c for c in columns if c in frame.columns]
    if clash:
        raise NncliError(
            f"{input_file} already has a column '{clash[0]}', which predict adds; rename it"
        )
    out = frame.copy()
    for name, values in columns.items():
        out[name] = values
    return out


def is_npz(path: Path) -> bool:
    return path.suffix.lower() == ".npz"


def _npz_rows(
    t: Trained, path: Path, targets: bool
) -> tuple[NDArray[np.float32], NDArray[Any] | None]:
    """Inputs (and with `targets`, targets) of a .npz file for a run of numeric inputs, read
    from the arrays the run's data named (x and y by default) and prepared as in training:
    each sample's numbers in the order of the run's inputs (for a CSV-trained run, its
    columns' order)."""
    encoded = [f.name for f in t.pre.features if f.categories is not None]
    if encoded:
        raise NncliError(
            f"{path}: {t.run} one-hot encodes the text column(s) "
            f"{', '.join(repr(c) for c in encoded)}; give its rows as a CSV with the columns "
            f"{_first_names(t.pre.input_names)}"
        )
    keys = {"x_key": str(getattr(t.spec.data, "x_key", "x"))}
    if targets:
        keys["y_key"] = str(getattr(t.spec.data, "y_key", "y"))
    arrays = read_npz(path, keys)
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
            f"{path}: '{x_key}' is {x_raw.dtype} shaped {x_raw.shape}; {t.run} takes "
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
    return x, _targets(frame, t.pre, str(path), array=y_key)


def _first_names(names: list[str], shown: int = 5) -> str:
    return ", ".join(names[:shown]) + (", ..." if len(names) > shown else "")


def _rows(flags: NDArray[np.bool_]) -> str:
    """`rows 0, 4 and 2 more`: rows of an array, counted from 0."""
    return lines(flags, first=0, word="row")


@dataclass
class Evaluation:
    """Metrics of a run's model on some labelled rows."""

    run: Path
    rows: str  # which rows: "the test split", or a file
    n: int
    checkpoint: Path
    metrics: dict[str, float]


def evaluate_run(
    run: Path,
    data_file: Path | None = None,
    split: str | None = None,
    checkpoint: Checkpoint = "best",
) -> Evaluation:
    """The run's loss and metrics on one of its splits (default: test, else val, else
    train) or on a labelled file (CSV; NPZ for runs trained on NPZ arrays)."""
    t = load_trained(run, checkpoint)
    if data_file is not None:
        if split is not None:
            raise NncliError("give --split or --data, not both")
        x, y = _file_rows(t, data_file)
        rows = str(data_file)
    else:
        x, y, split = _split_rows(t, split)
        rows = f"the {split} split"
    if len(x) == 0:
        raise NncliError(f"{rows} has no rows to evaluate")
    targets = torch.as_tensor(np.array(y))  # a copy: pandas may hand back read-only arrays
    if t.task.kind == "multiclass":
        targets = targets.long()
    else:
        targets = targets.float().reshape(len(targets), -1)
    loss_fn = losses.get(t.spec.loss.name).build(t.spec.loss)
    meter = Meter(t.task, t.spec.metric_names, torch.device("cpu"))
    with torch.no_grad():
        evaluate(t.model, loss_fn, torch.as_tensor(x), targets, meter, EVAL_BATCH)
    metrics = meter.results(meter.totals().tolist())
    return Evaluation(run, rows, len(x), t.checkpoint, metrics)


def _split_rows(t: Trained, split: str | None) -> tuple[NDArray[np.float32], NDArray[Any], str]:
    """One split of the run's own data, read again and prepared with the stored statistics."""
    raw = datamod.load(t.spec.data, t.spec.seed, t.spec.loss_info.target)
    assert raw.preprocessing is not None
    if raw.preprocessing.layout() != t.pre.layout():
        raise NncliError(
            f"the data of {t.run} ({t.spec.data.source}) is not what the run trained on "
            "(its columns, categories or classes changed); evaluate a file with --data"
        )
    indices = datamod.split(raw, t.spec.data.split, t.spec.seed)
    if split is None:
        split = next(s for s in ("test", "val", "train") if s in indices)
    if split not in indices:
        raise NncliError(f"{t.run} has no {split} split; it has {', '.join(indices)}")
    idx = indices[split]
    return t.pre.transform(raw.x[idx]), raw.y[idx], split


def _file_rows(t: Trained, path: Path) -> tuple[NDArray[np.float32], NDArray[Any]]:
    """Inputs and targets of a labelled file, encoded as the run's data was."""
    if is_npz(path):
        x, y = _npz_rows(t, path, targets=True)
        assert y is not None
        return x, y
    frame = read_csv(path, "--data")
    absent = [c for c in t.pre.targets if c not in frame.columns]
    if absent:
        listed = ", ".join(repr(c) for c in absent)
        raise NncliError(f"{path} lacks target column(s) {listed} to evaluate against")
    x = t.pre.transform(encode(frame, t.pre.features, t.pre.fill, str(path)))
    return x, _targets(frame, t.pre, str(path))


def _targets(
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
