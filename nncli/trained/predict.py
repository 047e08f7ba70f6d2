"""`nncli predict`: a trained run's model on new rows, through the preprocessing stored
with the run (never refitted)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from nncli.data.parquet import read_table, where_of
from nncli.data.preprocess import encode
from nncli.engine.inference import EVAL_BATCH
from nncli.engine.task import Task
from nncli.errors import NncliError
from nncli.trained.load import Checkpoint, TrainedRun, load_run
from nncli.trained.rows import image_rows, is_npy, is_npz, npz_rows, sequence_rows

if TYPE_CHECKING:
    import pandas as pd
    from numpy.typing import NDArray


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


def prediction_columns(t: TrainedRun, out: torch.Tensor) -> dict[str, list[Any]]:
    """What predict adds to each row: the class label and its probability, the value of
    each target, or a 0/1 and a probability per label (multi-label)."""
    task, n = t.task, len(out)
    if task.kind == "regression":
        values = out.reshape(n, -1).numpy().astype(np.float64)
        values = t.pre.scale_targets(values, back=True)  # in the targets' own units
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


def predict_file(run: Path, input_file: Path, checkpoint: Checkpoint = "last") -> pd.DataFrame:
    """The rows of `input_file` with the run's predictions as extra columns: a CSV's rows
    as they are, or for .npz arrays a `row` column (the sample's index in the array). For
    a timeseries run, the history's rows from the `window`-th on, each with the forecast
    its window (it and the rows before) makes for `horizon` rows later."""
    return predict_inputs(run, [input_file], checkpoint)


def predict_inputs(run: Path, inputs: list[Path], checkpoint: Checkpoint = "last") -> pd.DataFrame:
    """`predict_file` for a run of tables or arrays (one file); for a run trained on images,
    a `path` column of every image file given or found in the folders given."""
    import pandas as pd

    t = load_run(run, checkpoint)
    if t.pre.source == "images":
        files, x = image_rows(t, inputs)
        frame = pd.DataFrame({"path": [str(f) for f in files]})
        columns = prediction_columns(t, outputs(t.model, x))
        for name, values in columns.items():
            frame[name] = values
        return frame
    if len(inputs) != 1:
        raise NncliError(
            f"{run} was trained on {t.pre.source} data: give one CSV or .npz file, not "
            f"{len(inputs)} inputs"
        )
    input_file = inputs[0]
    sequences = sequence_rows(t, input_file, "input", targets=False)
    if sequences is not None:  # a timeseries: one forecast per window, on its last row
        frame, x, _ = sequences
    elif is_npz(input_file) or is_npy(input_file):
        x, _ = npz_rows(t, input_file, targets=False)
        frame = pd.DataFrame({"row": np.arange(len(x))})
    else:
        frame = read_table(input_file, "input")  # a CSV, or a Parquet file by its suffix
        x = t.pre.transform(
            encode(frame, t.pre.features, t.pre.fill, str(input_file), where_of(input_file))
        )
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
