"""A finished run loaded once: run.json, config.yaml, one checkpoint's weights in the model
the config describes, and preprocessing.json. predict, eval, export, plot and show start here."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from nncli import data as datamod
from nncli.config.spec import Spec, load_spec
from nncli.data.preprocess import Preprocessing
from nncli.engine.model import build_model
from nncli.engine.state import load_checkpoint, load_weights, trained_weights
from nncli.engine.task import Task, infer_task
from nncli.errors import NncliError
from nncli.runs.files import BEST, CHECKPOINTS, CONFIG, LAST, PREPROCESSING, RUN_JSON
from nncli.runs.record import RunInfo, read_run

Checkpoint = Literal["best", "last"]
CHECKPOINT_FILES: dict[Checkpoint, str] = {"best": BEST, "last": LAST}


@dataclass
class TrainedRun:
    """A run's model with one checkpoint's weights (on the cpu, in eval mode), and what it
    was made from."""

    folder: Path
    info: RunInfo  # run.json
    spec: Spec  # config.yaml, validated
    checkpoint: Path
    state: dict[str, Any]  # the checkpoint as loaded; its 'model' weights are in `model`
    model: nn.Sequential
    shapes: list[tuple[int, ...]]  # what each layer outputs for one sample
    input_shape: list[int]  # one sample as the model takes it
    preprocessing: Preprocessing | None  # None where the folder has no preprocessing.json

    @property
    def pre(self) -> Preprocessing:
        """The preprocessing predict and eval apply to new rows; NncliError where the run
        kept none (trained by an older nncli, or an incomplete folder)."""
        if self.preprocessing is None:
            return Preprocessing.read(self.folder / PREPROCESSING)  # raises: it is missing
        return self.preprocessing

    @cached_property
    def task(self) -> Task:
        """The task as training inferred it, from the data's stored layout."""
        layout = _no_rows(self.pre)
        return infer_task(layout, self.spec.loss.name, self.spec.loss_info, self.shapes[-1])


def load_run(run: Path, checkpoint: Checkpoint = "last") -> TrainedRun:
    """Rebuild a run's model from config.yaml and load a checkpoint's weights into it (read
    with weights_only=True: nothing in it is executed). Every damaged or missing part is an
    NncliError naming its file; nothing in the folder is changed."""
    info = read_run(run)  # a clear error for a path that is not a run folder
    config = run / CONFIG
    spec = load_spec(config)
    pre_file = run / PREPROCESSING
    pre = Preprocessing.read(pre_file) if pre_file.is_file() else None
    shape = _input_shape(run, info, pre)
    path = run / CHECKPOINTS / CHECKPOINT_FILES[checkpoint]
    state = load_checkpoint(path)
    try:
        model, shapes = build_model(spec.model, torch.zeros(2, *shape))
    except NncliError as exc:
        raise NncliError(
            f"{config} does not build for inputs shaped {tuple(shape)}: {exc}"
        ) from None
    load_weights(model, trained_weights(state), path, config)
    model.eval()
    return TrainedRun(run, info, spec, path, state, model, shapes, shape, pre)


def _input_shape(run: Path, info: RunInfo, pre: Preprocessing | None) -> list[int]:
    """One sample's shape as the model takes it: preprocessing.json's, else run.json's."""
    if pre is not None:
        return list(pre.shape)
    shape = info.input_shape
    if shape is None:
        raise NncliError(
            f"{run / RUN_JSON} records no input shape (trained by an older nncli); train it again"
        )
    if not all(d > 0 for d in shape):  # (read_run checked they are whole numbers)
        raise NncliError(f"{run / RUN_JSON}: input_shape {list(shape)} is not a list of sizes")
    return list(shape)


def _no_rows(pre: Preprocessing) -> datamod.Dataset:
    """A dataset with the run's layout and no rows: enough to infer its task."""
    width = len(pre.targets)
    y = np.zeros(0, np.int64) if pre.kind == "classification" else np.zeros((0, width))
    x = np.zeros((0, *pre.shape), np.float32)
    return datamod.Dataset(x, y, pre.kind, pre.class_names, pre.targets)
