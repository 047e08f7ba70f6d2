"""What a run learns (regression, binary, multiclass, multilabel), from its data, loss and
model output; impossible pairings are errors that say what to change."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from nncli.data import Dataset
from nncli.errors import NncliError
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


def infer_task(data: Dataset, loss: str, info: LossInfo, out_shape: tuple[int, ...]) -> Task:
    """The task of training `loss` on `data` with a model whose sample output is `out_shape`."""
    if len(out_shape) != 1:
        raise NncliError(
            f"the model outputs shape {out_shape} per sample; a loss needs one vector per sample: "
            "add `flatten` and a final `dense` layer"
        )
    k = out_shape[0]
    if data.kind == "regression":
        targets = data.y.shape[1] if data.y.ndim == 2 else 1
        if info.target != "value":
            raise NncliError(
                f"loss '{loss}' is for classification but the data has real-valued targets; "
                "use loss: mse (or mae, huber) and metrics such as mae, rmse, r2"
            )
        _outputs(k, targets, f"{targets} target(s)")
        return Task("regression", k, info.output)
    if data.kind == "multilabel":
        labels = data.y.shape[1]
        if info.target == "index":
            raise NncliError(
                f"loss '{loss}' picks one class per sample but the data has {labels} labels "
                f"per sample; use loss: bce_with_logits with a final dense: {labels}"
            )
        _outputs(k, labels, f"{labels} labels")
        return Task(
            "multilabel" if info.target == "binary" else "regression",
            k,
            info.output,
            data.class_names,
        )
    classes = data.n_classes
    if info.target == "index":
        if k != classes:
            raise NncliError(
                f"loss '{loss}' needs one output per class: the data has {classes} classes but "
                f"the model outputs {k}; end the model with dense: {classes}"
            )
        return Task("multiclass", k, info.output, data.class_names)
    if classes != 2:
        raise NncliError(
            f"loss '{loss}' is for two classes (0/1) but the data has {classes}; use loss: "
            f"cross_entropy with a final dense: {classes} (and no sigmoid/softmax after it)"
        )
    _outputs(k, 1, "two classes (one output: the probability of class 1)")
    return Task(
        "binary" if info.target == "binary" else "regression", 1, info.output, data.class_names
    )


def _outputs(k: int, wanted: int, why: str) -> None:
    if k != wanted:
        raise NncliError(
            f"the model outputs {k} value(s) per sample but the data has {why}; "
            f"end the model with dense: {wanted}"
        )
