"""What a run learns (regression, binary, multiclass, multilabel), from its data, loss and
model output; impossible pairings are errors that say what to change. Torch-free: validate
checks the pairing with the same rules, from what the file tells without the data."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from nncli.data import Dataset, TargetKind
from nncli.errors import NncliError
from nncli.layers import info as layer_info
from nncli.losses import LossInfo

TaskKind = Literal["regression", "binary", "multiclass", "multilabel"]


@dataclass(frozen=True)
class Task:
    kind: TaskKind
    n_outputs: int
    output: str  # what the model's last layer produces: logits, probabilities, ...
    class_names: list[str] | None = None

    @property
    def classifies(self) -> bool:
        return self.kind != "regression"

    @property
    def threshold(self) -> float:
        """Where a binary or multilabel output turns from class 0 to class 1."""
        return 0.0 if self.output == "logits" else 0.5


def infer_task(
    data: Dataset, loss: str, info: LossInfo, out_shape: tuple[int, ...], at: str | None = None
) -> Task:
    """The task of training `loss` on `data` with a model whose sample output is `out_shape`;
    `at` is the key of the layer that sets the outputs (`output_layer`), for messages."""
    if len(out_shape) != 1:
        raise NncliError(
            f"the model outputs shape {out_shape} per sample; a loss needs one vector per sample: "
            "add `flatten` and a final `dense` layer",
            key=at,
        )
    targets = (data.y.shape[1] if data.y.ndim == 2 else 1) if data.kind != "classification" else 1
    kind, k = task_of(data.kind, targets, data.n_classes, loss, info, out_shape[0], at)
    names = None if data.kind == "regression" else data.class_names
    return Task(kind, k, info.output, names)


def task_of(
    data: TargetKind,
    n_targets: int,
    n_classes: int,
    loss: str,
    info: LossInfo,
    k: int,
    at: str | None = None,
) -> tuple[TaskKind, int]:
    """The task and number of outputs of training `loss` on targets of kind `data` (their
    `n_targets` columns, or `n_classes` classes) with `k` outputs per sample; NncliError at
    the key `at` (the output layer) or `loss` for a pairing that cannot train."""
    if data == "regression":
        if info.target != "value":
            raise NncliError(
                f"loss '{loss}' is for classification but the data has real-valued targets; "
                "use loss: mse (or mae, huber) and metrics such as mae, rmse, r2"
            )
        _outputs(k, n_targets, f"{n_targets} target(s)", at)
        return "regression", k
    if data == "multilabel":
        if info.target == "index":
            raise NncliError(
                f"loss '{loss}' picks one class per sample but the data has {n_targets} labels "
                f"per sample; use loss: bce_with_logits with a final dense: {n_targets}"
            )
        _outputs(k, n_targets, f"{n_targets} labels", at)
        return ("multilabel" if info.target == "binary" else "regression"), k
    if info.target == "index":
        if k != n_classes:
            raise NncliError(
                f"loss '{loss}' needs one output per class: the data has {n_classes} classes "
                f"but the model outputs {k}; end the model with dense: {n_classes}",
                key=at,
            )
        return "multiclass", k
    if n_classes != 2:
        raise NncliError(
            f"loss '{loss}' is for two classes (0/1) but the data has {n_classes}; use loss: "
            f"cross_entropy with a final dense: {n_classes} (and no sigmoid/softmax after it)"
        )
    _outputs(k, 1, "two classes (one output: the probability of class 1)", at)
    return ("binary" if info.target == "binary" else "regression"), 1


def output_layer(types: Sequence[str]) -> str | None:
    """The key of the last layer with weights (`model.layers.4`): the one whose size sets
    the model's outputs."""
    last = next((i for i in range(len(types) - 1, -1, -1) if layer_info(types[i]).affine), None)
    return None if last is None else f"model.layers.{last}"


def _outputs(k: int, wanted: int, why: str, at: str | None) -> None:
    if k != wanted:
        raise NncliError(
            f"the model outputs {k} value(s) per sample but the data has {why}; "
            f"end the model with dense: {wanted}",
            key=at,
        )
