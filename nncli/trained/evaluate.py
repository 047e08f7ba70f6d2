"""`nncli eval`: a trained run's loss and metrics on one of its splits or a labelled file,
through the preprocessing stored with the run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from nncli import data as datamod
from nncli.engine.inference import EVAL_BATCH, evaluate
from nncli.engine.meter import Meter
from nncli.errors import NncliError
from nncli.losses import balanced, losses
from nncli.trained.load import Checkpoint, TrainedRun, load_run
from nncli.trained.rows import file_rows

if TYPE_CHECKING:
    from numpy.typing import NDArray

Split = Literal["train", "val", "test"]


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
    split: Split | None = None,
    checkpoint: Checkpoint = "last",
) -> Evaluation:
    """The run's loss and metrics on one of its splits (default: test, else val, else
    train) or on a labelled file (CSV; NPZ for runs trained on NPZ arrays)."""
    t = load_run(run, checkpoint)
    if data_file is not None:
        if split is not None:
            raise NncliError("give --split or --data, not both")
        x, y = file_rows(t, data_file)
        rows = str(data_file)
    else:
        x, y, used = _split_rows(t, split)
        rows = f"the {used} split"
    if len(x) == 0:
        raise NncliError(f"{rows} has no rows to evaluate")
    targets = torch.as_tensor(np.array(y))  # a copy: pandas may hand back read-only arrays
    if t.task.kind == "multiclass":
        targets = targets.long()
    else:
        targets = targets.float().reshape(len(targets), -1)
    loss_fn = losses.get(t.spec.loss.name).build(_loss_params(t))
    meter = Meter(t.task, t.spec.metric_names, torch.device("cpu"))
    with torch.no_grad():
        evaluate(t.model, loss_fn, torch.as_tensor(x), targets, meter, EVAL_BATCH)
    metrics = meter.results(meter.totals().tolist())
    return Evaluation(run, rows, len(x), t.checkpoint, metrics)


def _loss_params(t: TrainedRun) -> Any:
    """The run's loss parameters with the class weights it trained with: `balanced` ones
    as preprocessing.json keeps them, or computed again from the train split for a run
    from before it kept them."""
    params = t.spec.loss
    if getattr(params, "weight", None) != "balanced":
        return params
    weight = t.pre.loss_weight
    if weight is None:
        _, y, _ = _split_rows(t, "train")
        weight = balanced(t.spec.loss_info.target, torch.as_tensor(np.array(y)), t.task.n_outputs)
    return params.model_copy(update={"weight": weight})


def _split_rows(t: TrainedRun, split: str | None) -> tuple[NDArray[np.float32], NDArray[Any], str]:
    """One split of the run's own data, read again and prepared with the stored statistics."""
    raw = datamod.load(t.spec.data, t.spec.seed, t.spec.loss_info.target)
    assert raw.preprocessing is not None
    if raw.preprocessing.layout() != t.pre.layout():
        raise NncliError(
            f"the data of {t.folder} ({t.spec.data.source}) is not what the run trained on "
            "(its columns, categories or classes changed); evaluate a file with --data"
        )
    indices = datamod.split(raw, t.spec.data.split, t.spec.seed)
    if split is None:
        split = next(s for s in ("test", "val", "train") if s in indices)
    if split not in indices:
        raise NncliError(f"{t.folder} has no {split} split; it has {', '.join(indices)}")
    idx = indices[split]
    x = t.pre.transform(datamod.pipeline.raw_inputs(raw, t.pre, idx))
    return x, t.pre.scale_targets(raw.y[idx]), split
